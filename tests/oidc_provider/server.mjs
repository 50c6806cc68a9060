// An independent OpenID Connect provider for Watchgate's interop tests.
//
// It is npm's `oidc-provider` (panva), not Watchgate's own issuer: central's tests use it to prove
// that central accepts tokens from any standards-following issuer.
//
//   node tests/oidc_provider/server.mjs [PORT]
//
// Binds 127.0.0.1 on PORT (default 0: a free port), derives the issuer `http://127.0.0.1:PORT`
// from the bound port, and prints exactly one line on stdout: `READY http://127.0.0.1:PORT`.
// Everything else (oidc-provider's start-up warnings: unsupported runtime, in-memory adapter,
// devInteractions...) goes to stderr and is harmless. Provision with
// `npm ci --prefix tests/oidc_provider`.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

// oidc-provider prints NOTICEs with console.info, i.e. on stdout; keep stdout for the ready line.
console.info = console.error;
console.log = console.error;

const AUDIENCE = 'urn:watchgate';
const CLIENT_ID = 'watchgate-cli';

const ACCOUNTS = new Map([
  ['alice', { groups: ['analysts'] }],
  ['bob', { groups: ['admins'] }],
  ['carol', { groups: ['dba-leads'] }],
]);

function accountClaims(accountId) {
  const account = ACCOUNTS.get(accountId);
  return { preferred_username: accountId, groups: [...account.groups] };
}

const requestedPort = Number.parseInt(process.argv[2] ?? '0', 10);
if (!Number.isInteger(requestedPort) || requestedPort < 0 || requestedPort > 65535) {
  console.error(`invalid port: ${process.argv[2]}`);
  process.exit(2);
}

// The issuer URL must be known before the provider is built, and with port 0 it is only known
// once bound: bind first with a placeholder handler, then hand requests to the provider.
let handler = (_req, res) => {
  res.statusCode = 503;
  res.end();
};
const server = createServer((req, res) => handler(req, res));

await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(requestedPort, '127.0.0.1', resolve);
});

const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

// A fresh signing key per run (instead of oidc-provider's fixed development keys): a verifier
// that cached another run's key must not accept this run's tokens.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = {
  ...privateKey.export({ format: 'jwk' }),
  kid: `test-${randomBytes(6).toString('hex')}`,
  alg: 'RS256',
  use: 'sig',
};

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: CLIENT_ID,
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      // Without refresh_token here, offline_access is dropped silently.
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      // Loopback redirect for a native app: any port is accepted (RFC 8252 section 7.3).
      redirect_uris: ['http://127.0.0.1/callback'],
    },
  ],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  pkce: { required: () => true },

  async findAccount(_ctx, sub) {
    if (!ACCOUNTS.has(sub)) return undefined;
    return {
      accountId: sub,
      async claims(_use, _scope, _claims, _rejected) {
        return { sub, ...accountClaims(sub) };
      },
    };
  },

  scopes: ['openid', 'offline_access', 'profile', 'groups'],
  claims: {
    openid: ['sub'],
    profile: ['preferred_username'],
    groups: ['groups'],
  },
  // The ID token carries the scoped claims itself, not only via /userinfo.
  conformIdTokenClaims: false,

  // Claims added to JWT access tokens.
  async extraTokenClaims(_ctx, token) {
    if (!token.accountId || !ACCOUNTS.has(token.accountId)) return undefined;
    return accountClaims(token.accountId);
  },

  features: {
    devInteractions: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => AUDIENCE,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, resourceIndicator) => {
        if (resourceIndicator !== AUDIENCE) {
          throw new Provider.errors.InvalidTarget();
        }
        return {
          scope: 'watchgate',
          audience: AUDIENCE,
          accessTokenTTL: 600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },

  ttl: {
    AccessToken: 600,
    AuthorizationCode: 60,
    IdToken: 600,
    Interaction: 600,
    Session: 3600,
    Grant: 86400,
    RefreshToken: 86400,
  },
});

handler = provider.callback();

process.stdout.write(`READY ${issuer}\n`);

function shutdown() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
