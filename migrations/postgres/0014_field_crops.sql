-- The picture of a form's box whose reading is in doubt (the evidence the operator decides on),
-- kept encrypted like the documents (its own key, wrapped for "<document id>/campo-<field>").
-- Keep in step with ../sqlite/0014_field_crops.sql.

ALTER TABLE document_fields ADD COLUMN crop_storage TEXT;
ALTER TABLE document_fields ADD COLUMN crop_key BYTEA;
