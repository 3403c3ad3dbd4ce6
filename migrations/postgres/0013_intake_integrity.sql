-- Background work and intake integrity. Keep in step with ../sqlite/0013_intake_integrity.sql.
--
-- Why a document could not be read by OCR, as its owner and the office read it.
ALTER TABLE documents ADD COLUMN ocr_reason TEXT;
-- When a removed document's (or a closed pratica's, past its retention) stored bytes were deleted.
ALTER TABLE documents ADD COLUMN purged_at BIGINT;
-- Each lane's runners claim the due jobs of their kinds.
CREATE INDEX jobs_kind_due ON jobs (kind, status, run_at);
