/**
 * Reads one key of a Secret (environmentFrom secretKeyRef in kube mode). Needs `get` on secrets
 * (manifests/20-rbac.yaml); never lists or watches them, so the agent holds no copy of Secrets
 * it was not asked for.
 */
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { requestOptions } from './kube-client.js';

/** What a Secret holds under one key, or why not. */
export type SecretKeyValue =
  | { readonly found: true; readonly bytes: Buffer }
  | { readonly found: false; readonly missing: 'secret' | 'key' };

/** Reads Secrets: the API server's here, a fake in unit tests. */
export interface SecretReader {
  /** The bytes under `key` of Secret `namespace/name`. Rejects with the API error (statusCodeOf) when the read fails. */
  readKey(namespace: string, name: string, key: string, signal: AbortSignal): Promise<SecretKeyValue>;
}

/** The SecretReader of the API server. */
export class KubeSecretReader implements SecretReader {
  private readonly api: CoreV1Api;

  constructor(kubeConfig: KubeConfig) {
    this.api = kubeConfig.makeApiClient(CoreV1Api);
  }

  async readKey(namespace: string, name: string, key: string, signal: AbortSignal): Promise<SecretKeyValue> {
    let secret;
    try {
      secret = await this.api.readNamespacedSecret({ name, namespace }, requestOptions(signal));
    } catch (err) {
      if ((err as { code?: unknown }).code === 404) return { found: false, missing: 'secret' };
      throw err;
    }
    const data = secret.data?.[key];
    if (data === undefined) return { found: false, missing: 'key' };
    return { found: true, bytes: Buffer.from(data, 'base64') };
  }
}
