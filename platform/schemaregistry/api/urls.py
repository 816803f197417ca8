"""Confluent Schema Registry paths, mounted per cluster at /schema-registry/<cluster_id>/."""

from django.urls import path

from . import views

app_name = "schemaregistry"

urlpatterns = [
    path("", views.root, name="root"),
    path("schemas/types", views.schema_types, name="schema-types"),
    path("schemas/ids/<int:schema_id>", views.schema_by_id, name="schema"),
    path("schemas/ids/<int:schema_id>/schema", views.schema_text_by_id, name="schema-text"),
    path("schemas/ids/<int:schema_id>/subjects", views.schema_subjects, name="schema-subjects"),
    path("schemas/ids/<int:schema_id>/versions", views.schema_versions, name="schema-versions"),
    path("subjects", views.subjects, name="subjects"),
    path("subjects/<str:subject>", views.subject, name="subject"),
    path("subjects/<str:subject>/versions", views.versions, name="versions"),
    path("subjects/<str:subject>/versions/<str:version>", views.version, name="version"),
    path("subjects/<str:subject>/versions/<str:version>/schema", views.version_schema, name="version-schema"),
    path(
        "subjects/<str:subject>/versions/<str:version>/referencedby",
        views.referenced_by,
        name="referenced-by",
    ),
    path(
        "compatibility/subjects/<str:subject>/versions/<str:version>",
        views.compatibility_version,
        name="compatibility-version",
    ),
    path("compatibility/subjects/<str:subject>/versions", views.compatibility_all, name="compatibility-all"),
    path("config", views.config, name="config"),
    path("config/<str:subject>", views.config, name="subject-config"),
    path("mode", views.mode, name="mode"),
    path("mode/<str:subject>", views.mode, name="subject-mode"),
    path("contexts", views.contexts, name="contexts"),
]
