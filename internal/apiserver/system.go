package apiserver

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/moby/moby/api/types/registry"
	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/api/types/system"
	"golang.org/x/sys/unix"

	"github.com/berth-project/berth/internal/engine"
	"github.com/berth-project/berth/internal/errdefs"
)

func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("GET /_ping", s.ping) // GET patterns also answer HEAD
	m.HandleFunc("GET /version", s.version)
	m.HandleFunc("GET /info", s.info)
	m.HandleFunc("POST /auth", s.auth)

	m.HandleFunc("GET /images/json", s.imageList)
	m.HandleFunc("POST /images/create", s.imageCreate)
	m.HandleFunc("POST /images/load", s.imageLoad)
	m.HandleFunc("GET /images/get", s.imageSaveMany)
	m.HandleFunc("POST /images/prune", s.imagePrune)
	// Image names contain slashes, so the per-image routes are matched by
	// their suffix: /images/{name}/json, /history, /tag, /push, /get and
	// DELETE /images/{name}.
	m.HandleFunc("/images/{rest...}", s.imageByName)

	// Containers, execs, volumes and events (container*.go, volume.go).
	s.containerRoutes(m)

	// docker system df and the steps of docker system prune (system_df.go).
	m.HandleFunc("GET /system/df", s.systemDF)
	m.HandleFunc("POST /networks/prune", s.networksPrune)
	m.HandleFunc("POST /build/prune", s.buildPrune)

	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errdefs.NotFound(fmt.Errorf("page not found")))
	})
}

func (s *Server) ping(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Builder-Version", "1")
	h.Set("Docker-Experimental", "false")
	h.Set("Swarm", "inactive")
	h.Set("Cache-Control", "no-cache, no-store, must-revalidate")
	h.Set("Pragma", "no-cache")
	if r.Method == http.MethodHead {
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
		return
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("OK"))
}

func kernelVersion() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

func (s *Server) version(w http.ResponseWriter, r *http.Request) {
	kv := kernelVersion()
	v := system.VersionResponse{
		Platform:      system.PlatformInfo{Name: "Berth Engine"},
		Version:       s.id.ServerVersion,
		APIVersion:    APIVersion,
		MinAPIVersion: MinAPIVersion,
		Os:            runtime.GOOS,
		Arch:          runtime.GOARCH,
		GitCommit:     s.id.GitCommit,
		GoVersion:     runtime.Version(),
		KernelVersion: kv,
		Components: []system.ComponentVersion{{
			Name:    "Engine",
			Version: s.id.ServerVersion,
			Details: map[string]string{
				"ApiVersion":    APIVersion,
				"MinAPIVersion": MinAPIVersion,
				"GitCommit":     s.id.GitCommit,
				"GoVersion":     runtime.Version(),
				"Os":            runtime.GOOS,
				"Arch":          runtime.GOARCH,
				"KernelVersion": kv,
				"Experimental":  "false",
			},
		}},
	}
	writeJSON(w, http.StatusOK, v)
}

// osRelease returns PRETTY_NAME and VERSION_ID from /etc/os-release.
func osRelease() (pretty, version string) {
	data, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return "Linux", ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		v = strings.Trim(v, `"`)
		switch k {
		case "PRETTY_NAME":
			pretty = v
		case "VERSION_ID":
			version = v
		}
	}
	return pretty, version
}

// cgroupInfo reports the cgroup version the host mounts at /sys/fs/cgroup.
func cgroupInfo() (driver, version string) {
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		return "cgroupfs", "2"
	}
	return "cgroupfs", "1"
}

func (s *Server) info(w http.ResponseWriter, r *http.Request) {
	stats, err := s.eng.Stats(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	var si unix.Sysinfo_t
	_ = unix.Sysinfo(&si)
	pretty, osVersion := osRelease()
	cgDriver, cgVersion := cgroupInfo()
	cfg := &registry.ServiceConfig{
		IndexConfigs: map[string]*registry.IndexInfo{
			"docker.io": {Name: "docker.io", Mirrors: s.id.Mirrors, Secure: true, Official: true},
		},
		Mirrors: s.id.Mirrors,
	}
	for _, c := range append([]string{"127.0.0.0/8", "::1/128"}, s.id.InsecureRegistries...) {
		if p, err := netip.ParsePrefix(c); err == nil {
			cfg.InsecureRegistryCIDRs = append(cfg.InsecureRegistryCIDRs, p)
		} else {
			cfg.IndexConfigs[c] = &registry.IndexInfo{Name: c, Mirrors: []string{}, Secure: false}
		}
	}
	rs := s.eng.RuntimeSettings()
	if rs.DefaultRuntime == "" { // containers not enabled
		rs.DefaultRuntime = "berth-runtime"
		rs.Runtimes = map[string]string{"berth-runtime": "berth-runtime"}
	}
	info := system.Info{
		ID:                 s.id.ID,
		Name:               s.id.Name,
		Images:             stats.Images,
		Driver:             "overlayfs",
		DriverStatus:       [][2]string{{"Snapshots", fmt.Sprint(stats.Snapshots)}, {"Content blobs", fmt.Sprint(stats.Blobs)}},
		Plugins:            system.PluginsInfo{Volume: []string{"local"}, Network: []string{"bridge", "host", "null"}, Log: []string{"json-file", "local"}},
		MemoryLimit:        true,
		SwapLimit:          true,
		CPUCfsPeriod:       true,
		CPUCfsQuota:        true,
		CPUShares:          true,
		CPUSet:             true,
		PidsLimit:          true,
		Debug:              s.id.Debug,
		NGoroutines:        runtime.NumGoroutine(),
		SystemTime:         time.Now().Format(time.RFC3339Nano),
		LoggingDriver:      "json-file",
		CgroupDriver:       cgDriver,
		CgroupVersion:      cgVersion,
		KernelVersion:      kernelVersion(),
		OperatingSystem:    pretty,
		OSVersion:          osVersion,
		OSType:             "linux",
		Architecture:       unameMachine(),
		IndexServerAddress: "https://index.docker.io/v1/",
		RegistryConfig:     cfg,
		NCPU:               runtime.NumCPU(),
		MemTotal:           int64(si.Totalram) * int64(si.Unit),
		DockerRootDir:      s.id.DataRoot,
		HTTPProxy:          os.Getenv("HTTP_PROXY"),
		HTTPSProxy:         os.Getenv("HTTPS_PROXY"),
		NoProxy:            os.Getenv("NO_PROXY"),
		ServerVersion:      s.id.ServerVersion,
		Runtimes:           map[string]system.RuntimeWithStatus{},
		DefaultRuntime:     rs.DefaultRuntime,
		InitBinary:         rs.InitPath,
		SecurityOptions:    []string{"name=seccomp,profile=builtin"},
		Labels:             []string{},
		CDISpecDirs:        []string{},
		Warnings:           []string{},
		Swarm:              swarm.Info{LocalNodeState: swarm.LocalNodeStateInactive},
	}
	for name, path := range rs.Runtimes {
		info.Runtimes[name] = system.RuntimeWithStatus{Runtime: system.Runtime{Path: path}}
	}
	writeJSON(w, http.StatusOK, info)
}

func unameMachine() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return runtime.GOARCH
	}
	return unix.ByteSliceToString(u.Machine[:])
}

// registryAuth decodes the X-Registry-Auth header (base64url JSON of an
// AuthConfig); nil when absent.
func registryAuth(r *http.Request) (*engine.Auth, error) {
	h := r.Header.Get(registry.AuthHeader)
	if h == "" {
		return nil, nil
	}
	data, err := decodeBase64(h)
	if err != nil {
		return nil, errdefs.InvalidArgument(fmt.Errorf("decode %s header: %w", registry.AuthHeader, err))
	}
	var ac registry.AuthConfig
	if err := json.Unmarshal(data, &ac); err != nil {
		return nil, errdefs.InvalidArgument(fmt.Errorf("decode %s header: %w", registry.AuthHeader, err))
	}
	return authFromConfig(ac)
}

func decodeBase64(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.URLEncoding, base64.StdEncoding, base64.RawURLEncoding, base64.RawStdEncoding} {
		if data, err := enc.DecodeString(s); err == nil {
			return data, nil
		}
	}
	return nil, fmt.Errorf("not base64")
}

func authFromConfig(ac registry.AuthConfig) (*engine.Auth, error) {
	a := &engine.Auth{
		Username:      ac.Username,
		Password:      ac.Password,
		ServerAddress: ac.ServerAddress,
		IdentityToken: ac.IdentityToken,
		RegistryToken: ac.RegistryToken,
	}
	if ac.Auth != "" && a.Username == "" {
		data, err := decodeBase64(ac.Auth)
		if err != nil {
			return nil, errdefs.InvalidArgument(fmt.Errorf("decode auth field: %w", err))
		}
		u, p, ok := strings.Cut(string(data), ":")
		if !ok {
			return nil, errdefs.InvalidArgument(fmt.Errorf("auth field is not user:password"))
		}
		a.Username, a.Password = u, p
	}
	if *a == (engine.Auth{ServerAddress: a.ServerAddress}) {
		return nil, nil
	}
	return a, nil
}

func (s *Server) auth(w http.ResponseWriter, r *http.Request) {
	var ac registry.AuthConfig
	if err := json.NewDecoder(r.Body).Decode(&ac); err != nil {
		writeError(w, errdefs.InvalidArgument(fmt.Errorf("decode login request: %w", err)))
		return
	}
	a, err := authFromConfig(ac)
	if err != nil {
		writeError(w, err)
		return
	}
	if a == nil {
		a = &engine.Auth{ServerAddress: ac.ServerAddress}
	}
	token, err := s.eng.Login(r.Context(), *a)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, registry.AuthResponse{Status: "Login Succeeded", IdentityToken: token})
}
