// A real OpenID provider (panva/oidc-provider) with a login form, for the gateway's browser
// sign-in tests (examples/mlflow-gateway/tests/sso_peers.rs and the Chromium test).
//
//   node oidc-login-server.mjs <node_dir> <port> --redirect-uri URI [--redirect-uri URI2 …]
//        [--id-token-ttl SECS (default 300)] [--post-logout-redirect-uri URI]
//
// Serves issuer http://127.0.0.1:<port> and prints `ready` once listening. Dev interactions
// give a login form (fields `login`, `password`: any password) and then a consent form. One
// confidential client `gateway` / `gateway-secret` (client_secret_basic; authorization_code
// and refresh_token; PKCE S256 required) may use the given redirect URIs. Refresh tokens are
// issued for the `offline_access` scope (granted with prompt=consent). The ID token carries
// the claims of its scopes (conformIdTokenClaims off): `email`, `email_verified` (scope email)
// and `groups` (scope openid, so always). Users (login by the short name or the email):
//   alice  alice@example.com  verified      ["mlflow-users", "mlflow-admins"]
//   bob    bob@example.org    verified      ["other"]
//   carol  carol@example.com  not verified  ["mlflow-users"]
// Any other login is refused by the form (403 page). Everything is in memory and the signing
// key is made at start, so a restart forgets every grant and refresh token.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { parse as parseQuery } from 'node:querystring';
import { pathToFileURL } from 'node:url';

const USAGE = 'usage: node oidc-login-server.mjs <node_dir> <port> --redirect-uri URI [--redirect-uri URI …] '
  + '[--id-token-ttl SECS] [--post-logout-redirect-uri URI]';

function parseArgs(argv) {
  const positional = [];
  const options = { redirectUris: [], postLogoutRedirectUris: [], idTokenTtl: 300 };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    const value = argv[i + 1];
    if (!arg.startsWith('--')) {
      positional.push(arg);
      continue;
    }
    if (value === undefined) fail(`${arg} needs a value`);
    i += 1;
    switch (arg) {
      case '--redirect-uri': options.redirectUris.push(value); break;
      case '--post-logout-redirect-uri': options.postLogoutRedirectUris.push(value); break;
      case '--id-token-ttl': {
        options.idTokenTtl = Number(value);
        if (!Number.isInteger(options.idTokenTtl) || options.idTokenTtl < 1) {
          fail(`--id-token-ttl must be a positive whole number of seconds, not ${value}`);
        }
        break;
      }
      default: fail(`unknown option ${arg}`);
    }
  }
  const [nodeDir, port] = positional;
  if (!nodeDir || !port || positional.length > 2 || options.redirectUris.length === 0) fail();
  return { nodeDir, port: Number(port), ...options };
}

function fail(message) {
  if (message) console.error(`oidc-login-server: ${message}`);
  console.error(USAGE);
  process.exit(2);
}

const USERS = {
  alice: { email: 'alice@example.com', email_verified: true, groups: ['mlflow-users', 'mlflow-admins'] },
  bob: { email: 'bob@example.org', email_verified: true, groups: ['other'] },
  carol: { email: 'carol@example.com', email_verified: false, groups: ['mlflow-users'] },
};

/** The account id (short name) for a login typed into the form, or undefined. */
function accountFor(login) {
  const wanted = String(login ?? '').trim().toLowerCase();
  return Object.keys(USERS).find((id) => id === wanted || USERS[id].email === wanted);
}

const options = parseArgs(process.argv.slice(2));
// oidc-provider lives in the provisioned npm folder, not next to this script.
const entry = pathToFileURL(join(options.nodeDir, 'node_modules/oidc-provider/lib/index.js')).href;
const { default: Provider } = await import(entry);

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: `k-${randomUUID()}`, use: 'sig', alg: 'RS256' };

const oidc = new Provider(`http://127.0.0.1:${options.port}`, {
  jwks: { keys: [signingKey] },
  cookies: { keys: [`cookie-key-${randomUUID()}`] },
  clients: [{
    client_id: 'gateway',
    client_secret: 'gateway-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: options.redirectUris,
    post_logout_redirect_uris: options.postLogoutRedirectUris,
  }],
  pkce: { required: () => true },
  conformIdTokenClaims: false,
  claims: {
    openid: ['sub', 'groups'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  scopes: ['openid', 'offline_access', 'email', 'profile'],
  ttl: { IdToken: options.idTokenTtl },
  features: { devInteractions: { enabled: true } },
  async findAccount(_ctx, id) {
    const user = USERS[id];
    if (!user) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, name: id, ...user };
      },
    };
  },
});

// The dev login form takes any login; refuse unknown ones before oidc-provider sees them. The
// body is read here and handed on as `req.body`, which oidc-provider's parser then uses.
oidc.use(async (ctx, next) => {
  if (ctx.method !== 'POST' || !/^\/interaction\/[^/]+$/.test(ctx.path) || !ctx.is('application/x-www-form-urlencoded')) {
    return next();
  }
  const chunks = [];
  for await (const chunk of ctx.req) chunks.push(chunk);
  const raw = Buffer.concat(chunks).toString('utf8');
  const form = parseQuery(raw);
  if (form.prompt === 'login' && !accountFor(form.login)) {
    ctx.status = 403;
    ctx.type = 'html';
    ctx.body = '<!DOCTYPE html><html><head><title>Unknown user</title></head>'
      + '<body><h1>Unknown user</h1><p>This test provider knows alice, bob and carol.</p></body></html>';
    return undefined;
  }
  if (form.prompt === 'login') form.login = accountFor(form.login);
  ctx.req.body = new URLSearchParams(form).toString();
  return next();
});

createServer(oidc.callback()).listen(options.port, '127.0.0.1', () => {
  console.log('ready');
});
