"""Sets up, and changes, the federation that the reference implementation serves to the suite:

    federation.py setup              the trust anchor, the SPID provider under it, the trust mark profile
                                     of a public-sector relying party, one citizen at the provider;
                                     prints the trust anchor's public federation keys ({"keys": [...]})
    federation.py register <entity>  the trust anchor registers a relying party from its entity
                                     configuration (as its onboarding does) and gives it the trust
                                     mark; prints {"id": ..., "trust_mark": ...}
    federation.py revoke <entity>    the trust anchor revokes the relying party's entity statement,
                                     and the provider's cached trust chain for it is let expire (what
                                     the provider would do at the chain's exp, without the wait)

Environment as for settings.py. Everything here goes through the implementation's own models: the
statements, trust marks and tokens are made by its code."""

import json
import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
django.setup()

from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402
import requests  # noqa: E402
from spid_cie_oidc.accounts.models import User  # noqa: E402
from spid_cie_oidc.authority.models import (  # noqa: E402
    FederationDescendant,
    FederationEntityAssignedProfile,
    FederationEntityProfile,
)
from spid_cie_oidc.entity.jwks import create_jwk, public_jwk_from_private_jwk  # noqa: E402
from spid_cie_oidc.entity.jwtse import unpad_jwt_payload, verify_jws  # noqa: E402
from spid_cie_oidc.entity.models import FederationEntityConfiguration, TrustChain  # noqa: E402

BASE = os.environ["SPID_BASE"]
OP = f"{BASE}/oidc/op"
# The trust mark of a public-sector relying party in SPID (the SPID/CIE OIDC documentation's id).
SP_PUBLIC = "https://registry.agid.gov.it/openid_relying_party/public/"

# The citizen the suite logs in as (password known to the suite).
CITIZEN = {
    "username": "mario.rossi",
    "password": "Pr0va-Interop-2026",
    "attributes": {
        "https://attributes.eid.gov.it/fiscal_number": "TINIT-RSSMRA80A01H501U",
        "given_name": "Mario",
        "family_name": "Rossi",
        "birthdate": "1980-01-01",
        "email": "mario.rossi@example.org",
        "https://attributes.eid.gov.it/phone_number": "+393331234567",
    },
}


def signing_key():
    key = create_jwk()
    key["use"] = "sig"
    return key


def public(jwks):
    return [public_jwk_from_private_jwk(k) for k in jwks]


def setup():
    call_command("migrate", verbosity=0)
    ta_key = signing_key()
    ta = FederationEntityConfiguration.objects.create(
        sub=BASE,
        default_exp=60,
        default_signature_alg="RS256",
        authority_hints=[],
        jwks_fed=[ta_key],
        jwks_core=[signing_key()],
        trust_marks=[],
        trust_mark_issuers={SP_PUBLIC: [BASE]},
        entity_type="federation_entity",
        constraints={"max_path_length": 1},
        metadata={
            "federation_entity": {
                "organization_name": "Trust anchor (reference implementation)",
                "homepage_uri": BASE,
                "contacts": ["ops@example.org"],
                "federation_fetch_endpoint": f"{BASE}/fetch",
                "federation_resolve_endpoint": f"{BASE}/resolve",
                "federation_list_endpoint": f"{BASE}/list",
                "federation_trust_mark_status_endpoint": f"{BASE}/trust_mark_status",
            }
        },
        is_active=True,
    )

    op_fed, op_sig = signing_key(), signing_key()
    op = FederationEntityConfiguration.objects.create(
        sub=OP,
        default_exp=2880,
        default_signature_alg="RS256",
        authority_hints=[BASE],
        jwks_fed=[op_fed],
        jwks_core=[op_sig],
        trust_marks=[],
        trust_mark_issuers={},
        entity_type="openid_provider",
        constraints={},
        metadata={
            "federation_entity": {
                "organization_name": "SPID provider (reference implementation)",
                "homepage_uri": BASE,
                "contacts": ["ops@example.org"],
                "federation_resolve_endpoint": f"{OP}/resolve",
            },
            "openid_provider": {
                "issuer": OP,
                "authorization_endpoint": f"{OP}/authorization",
                "token_endpoint": f"{OP}/token",
                "userinfo_endpoint": f"{OP}/userinfo",
                "revocation_endpoint": f"{OP}/revocation",
                "introspection_endpoint": f"{OP}/introspection",
                "jwks": {"keys": public([op_sig])},
                "scopes_supported": ["openid", "offline_access"],
                "response_types_supported": ["code"],
                "response_modes_supported": ["query", "form_post"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "acr_values_supported": [
                    "https://www.spid.gov.it/SpidL1",
                    "https://www.spid.gov.it/SpidL2",
                    "https://www.spid.gov.it/SpidL3",
                ],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "userinfo_signing_alg_values_supported": ["RS256"],
                "userinfo_encryption_alg_values_supported": ["RSA-OAEP", "RSA-OAEP-256"],
                "userinfo_encryption_enc_values_supported": ["A128CBC-HS256", "A256CBC-HS512"],
                "request_object_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                "token_endpoint_auth_signing_alg_values_supported": ["RS256"],
                "claims_parameter_supported": True,
                "request_parameter_supported": True,
                "code_challenge_methods_supported": ["S256"],
                "authorization_response_iss_parameter_supported": True,
                "client_registration_types_supported": ["automatic"],
                "claims_supported": [
                    "https://attributes.eid.gov.it/fiscal_number",
                    "given_name",
                    "family_name",
                    "birthdate",
                    "email",
                    "https://attributes.eid.gov.it/phone_number",
                    "address",
                ],
            },
        },
        is_active=True,
    )
    FederationDescendant.objects.create(
        name="SPID provider", sub=OP, type="openid_provider",
        jwks=public(op.jwks_fed), is_active=True, status="valid",
    )
    FederationEntityProfile.objects.create(
        name="SPID Public SP",
        profile_category="openid_relying_party",
        profile_id=SP_PUBLIC,
        trust_mark_template={
            "id": SP_PUBLIC,
            "organization_type": "public",
            "id_code": {"ipa_code": "c_v999"},
            "email": "protocollo@comune.valleverde.it",
            "organization_name": "Comune di Valleverde",
        },
    )
    user = User.objects.create_user(CITIZEN["username"], password=CITIZEN["password"])
    user.attributes = CITIZEN["attributes"]
    user.save()
    print(json.dumps({"keys": public(ta.jwks_fed)}))


def register(entity_id):
    jwt = requests.get(f"{entity_id}/.well-known/openid-federation", timeout=5).text
    configuration = unpad_jwt_payload(jwt)
    keys = configuration["jwks"]["keys"]
    # The relying party's configuration is signed by one of the keys it publishes.
    if not any(_verifies(jwt, k) for k in keys):
        sys.exit("the entity configuration's signature does not verify")
    if configuration.get("authority_hints") != [BASE]:
        sys.exit(f"authority_hints {configuration.get('authority_hints')} do not name {BASE}")
    ta = FederationEntityConfiguration.objects.get(sub=BASE)
    descendant, _ = FederationDescendant.objects.update_or_create(
        sub=entity_id,
        defaults=dict(name="Sportello", type="openid_relying_party", jwks=keys,
                      is_active=True, status="valid"),
    )
    assigned, _ = FederationEntityAssignedProfile.objects.get_or_create(
        descendant=descendant,
        profile=FederationEntityProfile.objects.get(profile_id=SP_PUBLIC),
        issuer=ta,
    )
    print(json.dumps({"id": SP_PUBLIC, "trust_mark": assigned.trust_mark_as_jws}))


def _verifies(jwt, key):
    try:
        verify_jws(jwt, key)
        return True
    except Exception:
        return False


def revoke(entity_id):
    FederationDescendant.objects.filter(sub=entity_id).update(is_active=False)
    TrustChain.objects.filter(sub=entity_id).update(exp=timezone.now())
    print(json.dumps({"revoked": entity_id}))


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "setup":
        setup()
    elif command in ("register", "revoke") and len(sys.argv) == 3:
        {"register": register, "revoke": revoke}[command](sys.argv[2])
    else:
        sys.exit(__doc__)
