/**
 * What spec.templateArgs may hold. lxc-create gives a template its own options (where the rootfs
 * goes, the container's name and path, the mapped ids) before the author's arguments, and
 * templates parse them with getopt, which also takes unique prefixes of long options and clusters
 * of short ones: `--root /`, `--rootfs=/`, `-p /` or `-xp /` would point the template at a host
 * directory. So an argument may not name those options in any form getopt reads as them.
 */

/** The long options lxc-create passes to every template. */
export const RESERVED_TEMPLATE_OPTIONS: readonly string[] = ['rootfs', 'path', 'name', 'mapped-uid', 'mapped-gid'];
/** Short options templates map to the reserved ones (busybox: -p path, -n name). */
const RESERVED_SHORT = /^-[^-]*[pn]/;

/** Why `arg` may not be a template argument, or undefined when it may. */
export function templateArgProblem(arg: string): string | undefined {
  if (arg.startsWith('--')) {
    const option = arg.slice(2).split('=')[0] ?? '';
    if (option === '') return undefined; // "--" only ends the options
    const reserved = RESERVED_TEMPLATE_OPTIONS.find((name) => name.startsWith(option));
    if (reserved !== undefined) return `${arg} would set the template's --${reserved}, which lxc-create sets`;
    return undefined;
  }
  if (RESERVED_SHORT.test(arg)) return `${arg} would set the template's -p (path) or -n (name), which lxc-create sets`;
  return undefined;
}
