// Package runtime is the library behind berth-runtime: it creates, starts,
// signals and deletes containers from OCI bundles as the OCI runtime
// specification describes, and runs the container's init process.
//
// A container's life crosses several processes. `create` (Create) starts the
// init from a sealed copy of the runtime binary; the nsenter constructor puts
// it into the container's namespaces before Go starts; the init (Init) builds
// the root filesystem, applies the process attributes and waits on the
// container's exec FIFO; `start` (Start) opens that FIFO, and the init execs
// the user's program. State lives in one directory per container under the
// runtime root, written atomically; the status is derived from the init
// process itself, so it is never stale.
//
// The package imports nothing about images or the engine: it knows bundles.
package runtime
