// Package receiver verifies webhook deliveries signed per the Standard
// Webhooks specification, such as those Hookline sends, and hands the
// verified event to an http.Handler.
//
// A delivery is a POST whose body is signed together with two headers:
// webhook-id (the event ID, the same on every retry) and webhook-timestamp
// (Unix seconds of the attempt). webhook-signature holds one or more
// space-separated entries, "v1,<base64 HMAC-SHA256>" or
// "v1a,<base64 Ed25519 signature>", each over "<id>.<timestamp>.<body>".
// During a key rotation the sender signs with both the current and the
// previous key, so a receiver accepts a delivery when any entry matches any
// key it trusts.
//
// The pieces, from the lowest level up:
//
//   - ParseKey reads the key formats of the specification: "whsec_" HMAC
//     secrets, "whpk_" Ed25519 public keys and "whsk_" Ed25519 private keys
//     (of which only the public half is kept).
//   - Verify and Verifier check the headers, the timestamp tolerance and the
//     signatures, returning errors that match the exported sentinels with
//     errors.Is.
//   - KeySource reads the keys from the Secret Hookline maintains, mounted as
//     a volume, and picks up rotations without a restart.
//   - Middleware wraps an http.Handler with all of the above plus a source
//     address allow list, a body size cap and duplicate suppression, and
//     passes the decoded Event through the request context (EventFrom).
//
// Only the webhook-* header names are recognised: the specification names
// its headers exactly and says nothing of other spellings, so the svix-*
// headers of older senders are not read.
//
// Nothing in this package prints key material: Key redacts itself in fmt and
// log/slog output, and no error or log message carries a secret.
package receiver
