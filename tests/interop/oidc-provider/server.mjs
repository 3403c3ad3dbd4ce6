// panva's oidc-provider (OpenID Certified), set up with the SPID profile for the relying party's
// interoperability test: signed request objects required, PKCE, private_key_jwt, userinfo signed
// then encrypted to the client, the SpidL1–3 levels, the SPID attribute names, RFC 9207's iss.
//
// Environment: PORT; CLIENT_ID, REDIRECT_URI and CLIENT_JWKS (the relying party's public keys, as its
// entity configuration publishes them). Prints "ready <issuer>" when it listens.
//
// Its login page is this file's: a username, and the level the person "used" (the level asked for,
// unless the test picks another); then a consent page. Accounts: any username; the one the test uses
// is below.

import * as crypto from 'node:crypto';
import * as http from 'node:http';
import { URLSearchParams } from 'node:url';

import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const LEVELS = [1, 2, 3].map((n) => `https://www.spid.gov.it/SpidL${n}`);
const FISCAL = 'https://attributes.eid.gov.it/fiscal_number';
const PHONE = 'https://attributes.eid.gov.it/phone_number';

const ACCOUNTS = {
  'giulia.bianchi': {
    [FISCAL]: 'TINIT-BNCGLI85M41F205B',
    given_name: 'Giulia',
    family_name: 'Bianchi',
    birthdate: '1985-08-01',
    email: 'giulia.bianchi@example.org',
    [PHONE]: '+393471234567',
  },
};

const signing = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey
  .export({ format: 'jwk' });
signing.kid = crypto.randomUUID();
signing.alg = 'RS256';
signing.use = 'sig';

const configuration = {
  clients: [{
    client_id: process.env.CLIENT_ID,
    redirect_uris: [process.env.REDIRECT_URI],
    response_types: ['code'],
    grant_types: ['authorization_code'],
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'RS256',
    request_object_signing_alg: 'RS256',
    id_token_signed_response_alg: 'RS256',
    userinfo_signed_response_alg: 'RS256',
    userinfo_encrypted_response_alg: 'RSA-OAEP-256',
    userinfo_encrypted_response_enc: 'A256CBC-HS512',
    jwks: JSON.parse(process.env.CLIENT_JWKS),
  }],
  jwks: { keys: [signing] },
  cookies: { keys: [crypto.randomUUID()] },
  acrValues: LEVELS,
  claims: {
    openid: ['sub'],
    acr: null,
    auth_time: null,
    spid: [FISCAL, 'given_name', 'family_name', 'birthdate', 'email', PHONE, 'address'],
  },
  features: {
    devInteractions: { enabled: false },
    claimsParameter: { enabled: true },
    requestObjects: { enabled: true, requireSignedRequestObject: true },
    encryption: { enabled: true },
    jwtUserinfo: { enabled: true },
    revocation: { enabled: true },
  },
  responseTypes: ['code'],
  pkce: { required: () => true },
  clientAuthMethods: ['private_key_jwt'],
  enabledJWA: {
    userinfoEncryptionAlgValues: ['RSA-OAEP', 'RSA-OAEP-256'],
    userinfoEncryptionEncValues: ['A128CBC-HS256', 'A256CBC-HS512'],
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, id) {
    const attributes = ACCOUNTS[id];
    if (!attributes) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, ...attributes }) };
  },
};

const provider = new Provider(issuer, configuration);

// The SPID rules want at_hash in every ID token; oidc-provider puts it only in those issued at the
// authorization endpoint. Issued at the token endpoint, the ID token gets the access token's hash.
const issue = provider.IdToken.prototype.issue;
provider.IdToken.prototype.issue = function issueWithAtHash(options) {
  const at = this.ctx?.oidc?.entities?.AccessToken;
  if (options?.use === 'idtoken' && at && this.extra.at_hash === undefined) {
    this.set('at_hash', at.jti);
  }
  return issue.call(this, options);
};

const page = (title, body) => `<!doctype html><html lang="it"><head><meta charset="utf-8">
<title>${title}</title></head><body><h1>${title}</h1>${body}</body></html>`;

async function readForm(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return new URLSearchParams(body);
}

async function interaction(req, res) {
  const [, , uid, action] = req.url.split('?')[0].split('/');
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction mismatch');
  if (req.method === 'GET') {
    res.setHeader('content-type', 'text/html; charset=utf-8');
    if (details.prompt.name === 'login') {
      const asked = String(details.params.acr_values || LEVELS[1]).split(' ')[0];
      res.end(page('Entra con SPID', `<form method="post" action="/interaction/${uid}/login">
<label>Nome utente <input name="login"></label>
<input type="hidden" name="acr" value="${asked}"><button>Entra</button></form>`));
    } else {
      res.end(page('Autorizza', `<form method="post" action="/interaction/${uid}/confirm">
<p>${details.params.client_id} chiede i tuoi dati.</p><button>Acconsento</button></form>`));
    }
    return;
  }
  const form = await readForm(req);
  if (action === 'login') {
    const accountId = form.get('login');
    if (!ACCOUNTS[accountId]) {
      await provider.interactionFinished(req, res, {
        error: 'access_denied', error_description: 'unknown account',
      });
      return;
    }
    await provider.interactionFinished(req, res, {
      login: { accountId, acr: form.get('acr') },
    }, { mergeWithLastSubmission: false });
    return;
  }
  const { prompt, params, session, grantId } = details;
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
  if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  await provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } }, {
    mergeWithLastSubmission: true,
  });
}

const callback = provider.callback();
http.createServer((req, res) => {
  if (req.url.startsWith('/interaction/')) {
    interaction(req, res).catch((error) => {
      res.statusCode = 400;
      res.end(String(error));
    });
  } else {
    callback(req, res);
  }
}).listen(port, '127.0.0.1', () => console.log(`ready ${issuer}`));
