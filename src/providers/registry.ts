/**
 * Every provider hyperlet knows, one per kind, and how the daemon makes them from its options.
 * A provider that cannot be made here becomes an UnavailableProvider saying why.
 */
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Kind } from '../api/v1alpha1/group.js';
import type { IdRange } from '../api/v1alpha1/host-defaults.js';
import { KINDS } from '../api/v1alpha1/group.js';
import type { Clock } from '../shared/clock.js';
import { errorMessage } from '../shared/errors.js';
import type { Provider } from './provider.js';
import { UnavailableProvider } from './unavailable-provider.js';

/** Where the providers reach their tools and daemons, and which kinds to serve. */
export interface ProviderOptions {
  /** LXC's lxcpath (default /var/lib/lxc). */
  readonly lxcpath: string;
  /** libvirt connection URI (default qemu:///system). */
  readonly libvirtUri: string;
  /** libvirtd's UNIX socket (default /run/libvirt/libvirt-sock). */
  readonly libvirtSocket?: string;
  /** Kinds to serve; the others are not reconciled at all. */
  readonly kinds: readonly Kind[];
  readonly logger: Logger;
  /** Cap of each container's console log before it is rotated (--console-log-size; default 1 MiB). */
  readonly consoleLogBytes?: number;
  /** The host ids unprivileged containers are mapped onto (the host policy's host.idmap). */
  readonly idmap?: IdRange;
  /** Where spec.image tarballs and VM disk images by URL are downloaded (and tarballs unpacked; default DEFAULT_IMAGE_CACHE_DIR). */
  readonly imageCacheDir?: string;
  /** Cap of the image cache on disk: least recently used images not in use go beyond it (default: no cap). */
  readonly imageCacheMaxBytes?: number;
  /** Time for the providers' timestamps, caches and waits (default: the system clock). */
  readonly clock?: Clock;
}

/** A provider's constructor, registered per kind below. */
export type ProviderFactory = (options: ProviderOptions) => Provider | Promise<Provider>;

/**
 * Each provider adds its factory here: the provider with the real tool runner or connection it
 * drives. A provider's code loads only when its kind is served (a containers-only daemon starts
 * without the libvirt client and its XML parser).
 */
export const PROVIDER_FACTORIES: Partial<Record<Kind, ProviderFactory>> = {
  Container: async (o) => {
    const [{ LxcProvider }, { LxcTools }, { DEFAULT_IMAGE_CACHE_DIR, ImageCache }, { overlayLowerDirs }] = await Promise.all([
      import('./lxc/lxc-provider.js'), import('./lxc/lxc-tools.js'), import('./images/image-cache.js'), import('./lxc/overlay-lower-dirs.js'),
    ]);
    return new LxcProvider({
      lxcpath: o.lxcpath,
      logger: o.logger,
      clock: o.clock,
      images: new ImageCache({
        dir: o.imageCacheDir ?? DEFAULT_IMAGE_CACHE_DIR, logger: o.logger, ...(o.clock === undefined ? {} : { clock: o.clock }),
        // The cache is this daemon's: the trees its containers use are the lowers under its lxcpath.
        ...(o.imageCacheMaxBytes === undefined ? {} : { maxBytes: o.imageCacheMaxBytes, inUse: () => overlayLowerDirs(o.lxcpath) }),
      }),
      tools: new LxcTools({ logger: o.logger.child({ provider: 'lxc', lxcpath: o.lxcpath }) }),
      ...(o.consoleLogBytes === undefined ? {} : { consoleLogBytes: o.consoleLogBytes }),
      ...(o.idmap === undefined ? {} : { idmap: o.idmap }),
    });
  },
  VirtualMachine: async (o) => {
    const [{ LibvirtProvider }, { LibvirtClient }, { DEFAULT_IMAGE_CACHE_DIR, ImageCache }] = await Promise.all([
      import('./libvirt/libvirt-provider.js'), import('./libvirt/libvirt-client.js'), import('./images/image-cache.js'),
    ]);
    return new LibvirtProvider({
      logger: o.logger,
      clock: o.clock,
      // VM bases live apart from the containers' cache and are never evicted: every overlay made
      // on one reads it for as long as the VM exists, which the containers' eviction cannot see.
      images: new ImageCache({
        dir: join(o.imageCacheDir ?? DEFAULT_IMAGE_CACHE_DIR, 'disks'), logger: o.logger, ...(o.clock === undefined ? {} : { clock: o.clock }),
      }),
      client: new LibvirtClient({
        uri: o.libvirtUri,
        logger: o.logger.child({ provider: 'libvirt' }),
        ...(o.libvirtSocket === undefined ? {} : { socketPath: o.libvirtSocket }),
      }),
    });
  },
};

/** Makes the providers for `options.kinds`; never throws. */
export async function createProviders(options: ProviderOptions): Promise<Map<Kind, Provider>> {
  const providers = new Map<Kind, Provider>();
  for (const kind of options.kinds) {
    const name = KINDS[kind].provider;
    const factory = PROVIDER_FACTORIES[kind];
    if (factory === undefined) {
      providers.set(kind, new UnavailableProvider(name, kind, `no ${name} provider is built into this hyperlet`));
      continue;
    }
    try {
      providers.set(kind, await factory(options));
    } catch (err) {
      options.logger.error({ err, provider: name }, 'cannot set up provider');
      providers.set(kind, new UnavailableProvider(name, kind, `cannot set up the ${name} provider: ${errorMessage(err)}`));
    }
  }
  return providers;
}

/** Releases providers that hold connections or child processes. */
export async function closeProviders(providers: Iterable<Provider>): Promise<void> {
  for (const provider of providers) await provider.close();
}
