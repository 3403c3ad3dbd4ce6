"""The trust anchor's federation endpoints and the provider's, as in the implementation's example."""

from django.urls import path
from spid_cie_oidc.authority.urls import urlpatterns as authority_urlpatterns
from spid_cie_oidc.entity.urls import urlpatterns as entity_urlpatterns
from spid_cie_oidc.entity.views import entity_configuration, resolve_entity_statement
from spid_cie_oidc.provider.urls import urlpatterns as op_urlpatterns

urlpatterns = list(entity_urlpatterns) + list(authority_urlpatterns) + list(op_urlpatterns) + [
    path("oidc/op/.well-known/openid-federation", entity_configuration),
    path("oidc/op/resolve", resolve_entity_statement),
]
