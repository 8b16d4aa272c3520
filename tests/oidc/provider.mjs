// A real OpenID Connect provider (panva's oidc-provider) for the AIS tests.
//
// It listens on an ephemeral port of 127.0.0.1 and prints `listening PORT`; it then reads one
// line from standard input, the redirect URL of the AIS under test (which could not be known
// before), builds the provider with one confidential client whose redirect is that URL, and
// prints `ready`. The signing key (RS256) and cookie keys are generated at start.
//
// Accounts: `george` (P9, with an NHS number) and `mary` (P5, given and family names only).
// The login and consent forms are oidc-provider's development interactions: any password.
// Claims of the requested scopes go into the ID token (conformIdTokenClaims: false), as the
// AIS reads them from there.

import crypto from 'node:crypto';
import http from 'node:http';
import readline from 'node:readline';

import Provider from 'oidc-provider';

export const CLIENT_ID = 'cophr-ais-test';
export const CLIENT_SECRET = 'a-test-secret-that-is-long-enough-for-hs256-0123456789';

const accounts = {
  george: {
    sub: 'george',
    name: 'George Jones',
    birthdate: '1948-02-03',
    nhs_number: '9434765919',
    identity_proofing_level: 'P9',
  },
  mary: {
    sub: 'mary',
    given_name: 'Mary',
    family_name: 'Jones',
    birthdate: '1950-07-14',
    identity_proofing_level: 'P5',
  },
};

let handler = (req, res) => {
  res.statusCode = 503;
  res.end('not ready');
};
const server = http.createServer((req, res) => handler(req, res));

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  process.stdout.write(`listening ${port}\n`);
  const rl = readline.createInterface({ input: process.stdin });
  rl.once('line', (redirect) => {
    const issuer = `http://127.0.0.1:${port}`;
    const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'test-rs256', use: 'sig', alg: 'RS256' };
    const provider = new Provider(issuer, {
      clients: [{
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        redirect_uris: [redirect.trim()],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      }],
      jwks: { keys: [jwk] },
      cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
      claims: {
        openid: ['sub'],
        profile: ['name', 'given_name', 'family_name', 'birthdate'],
        nhs_number: ['nhs_number', 'identity_proofing_level'],
      },
      scopes: ['openid', 'profile', 'nhs_number'],
      conformIdTokenClaims: false,
      pkce: { required: () => true },
      features: { devInteractions: { enabled: true } },
      async findAccount(ctx, id) {
        const claims = accounts[id];
        if (!claims) return undefined;
        return { accountId: id, async claims() { return { ...claims }; } };
      },
    });
    provider.on('server_error', (ctx, err) => process.stderr.write(`server_error: ${err}\n`));
    handler = provider.callback();
    process.stdout.write('ready\n');
  });
  // The test closes standard input when it is done: stop with it.
  process.stdin.on('end', () => process.exit(0));
});
