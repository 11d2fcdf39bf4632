/**
 * The name an object's instance gets on the host: NAME in namespace "default", NAMESPACE.NAME
 * otherwise. DNS-1123 labels hold no dots, so two objects never map to the same host name.
 */
export function hostNameFor(namespace: string, name: string): string {
  return namespace === 'default' ? name : `${namespace}.${name}`;
}

/** The inverse of hostNameFor. */
export function objectNameFor(hostName: string): { namespace: string; name: string } {
  const dot = hostName.indexOf('.');
  return dot < 0 ? { namespace: 'default', name: hostName } : { namespace: hostName.slice(0, dot), name: hostName.slice(dot + 1) };
}
