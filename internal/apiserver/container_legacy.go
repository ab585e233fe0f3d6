package apiserver

import (
	"github.com/moby/moby/api/types/container"
)

// inspectResponse is a container's inspect as API versions before 1.52 (the
// docker CLI up to 28, and berthd's own version) send it: NetworkSettings
// keeps the deprecated top-level fields Docker still fills there, so
// templates such as `{{.NetworkSettings.IPAddress}}` print an empty value
// rather than "<no value>".
type inspectResponse struct {
	container.InspectResponse
	NetworkSettings *legacyNetworkSettings
}

// legacyNetworkSettings adds to NetworkSettings the fields of the default
// bridge network (empty: berthd has no bridge) and the ones Docker no longer
// populates but still sends.
type legacyNetworkSettings struct {
	Bridge                 string
	HairpinMode            bool
	LinkLocalIPv6Address   string
	LinkLocalIPv6PrefixLen int
	SecondaryIPAddresses   []any
	SecondaryIPv6Addresses []any
	EndpointID             string
	Gateway                string
	GlobalIPv6Address      string
	GlobalIPv6PrefixLen    int
	IPAddress              string
	IPPrefixLen            int
	IPv6Gateway            string
	MacAddress             string
	*container.NetworkSettings
}

func legacyInspect(in container.InspectResponse) inspectResponse {
	out := inspectResponse{InspectResponse: in}
	if in.NetworkSettings != nil {
		out.NetworkSettings = &legacyNetworkSettings{NetworkSettings: in.NetworkSettings}
	}
	return out
}
