import * as v from "valibot";

/**
 * An email address as the platform stores it: trimmed and lower-cased, so
 * uniqueness is case-insensitive. RFC 5322 (apostrophes and plus tags are
 * real), with a dotted domain: mail must be deliverable.
 */
export const EmailSchema = v.pipe(
  v.string(),
  v.trim(),
  v.toLowerCase(),
  v.maxLength(254, "must be at most 254 characters"),
  v.rfcEmail("must be an email address"),
  v.regex(/@[^@]+\.[^@.]+$/, "must be an email address"),
);
