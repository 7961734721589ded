// Package controllers holds the reconcilers of the Hookline control plane.
// They orchestrate: they read the cluster, call the data-plane packages under
// internal/ for keys and policies, server-side apply what they own, and write
// status once per reconcile. They deliver nothing themselves.
package controllers

// FieldManager is the field owner of everything the controllers apply,
// status included. The dispatcher applies subscription status under a field
// manager of its own, so the two never fight over the same fields.
const FieldManager = "hookline-controller"
