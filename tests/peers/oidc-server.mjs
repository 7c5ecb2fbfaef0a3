// A real OpenID provider (panva/oidc-provider) for tests/tests/oidc_peers.rs.
//
//   node oidc-server.mjs <node_dir> <port> [<second_port>] [--tls <cert.pem> <key.pem>]
//
// Serves issuer http://127.0.0.1:<port> with discovery, /jwks and /token; with --tls, serves
// HTTPS with that certificate chain and key instead, and the issuer is https://127.0.0.1:<port>. One confidential
// client `ci` / `ci-secret` may use client_credentials. Access tokens are RS256 JWTs
// (resource indicators, accessTokenFormat 'jwt'):
//   - resource urn:mlflow (the default): aud urn:mlflow, TTL 300 s;
//   - resource urn:mlflow:short: aud urn:mlflow, TTL 1 s (for expiry tests);
//   - any other resource R: aud R (for wrong-audience tests).
// Each start makes a fresh RSA key with a fresh kid, so restarting on the same port is a key
// rotation. With <second_port>, a second provider (issuer http://127.0.0.1:<second_port>)
// signs with the same key: its tokens verify but carry the wrong issuer.
import { createPrivateKey, generateKeyPairSync, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const args = process.argv.slice(2);
const tlsAt = args.indexOf('--tls');
const tls = tlsAt === -1 ? null : { cert: args[tlsAt + 1], key: args[tlsAt + 2] };
if (tls) args.splice(tlsAt, 3);
const [nodeDir, port, secondPort] = args;
if (!nodeDir || !port || (tls && (!tls.cert || !tls.key))) {
  console.error('usage: node oidc-server.mjs <node_dir> <port> [<second_port>] [--tls <cert.pem> <key.pem>]');
  process.exit(2);
}
const scheme = tls ? 'https' : 'http';
const listen = tls
  ? (handler) => createTlsServer({ cert: readFileSync(tls.cert), key: readFileSync(tls.key) }, handler)
  : (handler) => createServer(handler);
// oidc-provider lives in the provisioned npm folder, not next to this script.
const entry = pathToFileURL(join(nodeDir, 'node_modules/oidc-provider/lib/index.js')).href;
const { default: Provider } = await import(entry);

// The key leaves the generator as PEM and is parsed again before its export as a JWK. Node 20
// can deadlock otherwise: exporting the KeyObject that generateKeyPairSync returned locks the
// key, and a garbage collection during the export may destroy the finished generator job,
// which locks the same key again (seen as a provider that never listens, once in a few starts).
const { privateKey: privatePem } = generateKeyPairSync('rsa', {
  modulusLength: 2048,
  publicKeyEncoding: { type: 'spki', format: 'pem' },
  privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
});
const signingKey = { ...createPrivateKey(privatePem).export({ format: 'jwk' }), kid: `k-${randomUUID()}`, use: 'sig', alg: 'RS256' };

function start(listenPort) {
  const oidc = new Provider(`${scheme}://127.0.0.1:${listenPort}`, {
    jwks: { keys: [signingKey] },
    clients: [{
      client_id: 'ci',
      client_secret: 'ci-secret',
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
    }],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => 'urn:mlflow',
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resource) => {
          const short = resource === 'urn:mlflow:short';
          return {
            scope: 'read write',
            audience: short ? 'urn:mlflow' : resource,
            accessTokenTTL: short ? 1 : 300,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
  });
  return new Promise((resolve) => {
    listen(oidc.callback()).listen(Number(listenPort), '127.0.0.1', resolve);
  });
}

await start(port);
if (secondPort) await start(secondPort);
console.log(`ready kid=${signingKey.kid}`);
