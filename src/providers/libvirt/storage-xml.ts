/** Storage pool and volume XML for the pools and qcow2 volumes hyperlet creates; every value is escaped. */
import { xmlEscape } from './xml-text.js';

/** A `dir` pool named `name` whose volumes live in `path`. */
export function buildDirPoolXml(name: string, path: string): string {
  return `<pool type="dir"><name>${xmlEscape(name)}</name><target><path>${xmlEscape(path)}</path><permissions><mode>0711</mode></permissions></target></pool>`;
}

/** The format of a backing image, from its first bytes: qcow2 images start with "QFI\xfb". */
export function imageFormatOf(head: Buffer): 'qcow2' | 'raw' {
  return head.length >= 4 && head.readUInt32BE(0) === 0x514649fb ? 'qcow2' : 'raw';
}

/** A qcow2 volume of `capacityBytes`, optionally a copy-on-write layer over `backing`. */
export function buildVolumeXml(name: string, capacityBytes: number, backing?: { path: string; format: 'qcow2' | 'raw' }): string {
  return [
    `<volume type="file">`,
    `<name>${xmlEscape(name)}</name>`,
    `<capacity unit="bytes">${capacityBytes}</capacity>`,
    `<allocation unit="bytes">0</allocation>`,
    `<target><format type="qcow2"/></target>`,
    ...(backing === undefined ? [] : [`<backingStore><path>${xmlEscape(backing.path)}</path><format type="${backing.format}"/></backingStore>`]),
    `</volume>`,
  ].join('');
}
