// Package specgen turns a container's configuration (the image config and a
// Docker Engine API container-create request) into the OCI runtime spec that
// berthd writes into the container's bundle, with Docker's defaults: the
// same environment, command, user, capabilities, seccomp profile, mounts,
// namespaces and resources a Docker daemon would give the same request.
//
// It is its own package, apart from internal/image, because it needs the
// Docker API's HostConfig (capabilities, binds, resources, security options),
// which internal/image, a package about OCI images, should not import. It is
// pure: it reads nothing but /etc/passwd and /etc/group inside the given root
// filesystem, and takes every fact about the host (grantable capabilities,
// hard rlimits, cgroup version, device numbers, paths the engine prepared) as
// input, so every rule is testable without a daemon.
package specgen
