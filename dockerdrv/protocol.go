package dockerdrv

// The libnetwork remote driver and IPAM plugin protocol (moby
// libnetwork/docs/remote.md and ipam.md): each call is a POST of a JSON
// object to /<Interface>.<Method>; a failure is {"Err": "..."}.

type activateResponse struct {
	Implements []string
}

type capabilitiesResponse struct {
	Scope             string
	ConnectivityScope string
}

type ipamCapabilitiesResponse struct {
	RequiresMACAddress    bool
	RequiresRequestReplay bool
}

type addressSpacesResponse struct {
	LocalDefaultAddressSpace  string
	GlobalDefaultAddressSpace string
}

type requestPoolRequest struct {
	AddressSpace string
	Pool         string
	SubPool      string
	Options      map[string]string
	V6           bool
}

type requestPoolResponse struct {
	PoolID string
	Pool   string
	Data   map[string]string
}

type releasePoolRequest struct {
	PoolID string
}

type requestAddressRequest struct {
	PoolID  string
	Address string
	Options map[string]string
}

type requestAddressResponse struct {
	Address string
	Data    map[string]string
}

type releaseAddressRequest struct {
	PoolID  string
	Address string
}

type ipamData struct {
	AddressSpace string
	Pool         string
	Gateway      string
	AuxAddresses map[string]string
}

type createNetworkRequest struct {
	NetworkID string
	Options   map[string]any
	IPv4Data  []ipamData
	IPv6Data  []ipamData
}

type networkRequest struct {
	NetworkID string
}

type endpointInterface struct {
	Address     string
	AddressIPv6 string
	MacAddress  string
}

type createEndpointRequest struct {
	NetworkID  string
	EndpointID string
	Interface  *endpointInterface
	Options    map[string]any
}

// createEndpointResponse carries no Interface: libnetwork gave the address
// (from this plugin's IPAM) and refuses an answer that changes it.
type createEndpointResponse struct{}

type endpointRequest struct {
	NetworkID  string
	EndpointID string
}

type operInfoResponse struct {
	Value map[string]any
}

type joinRequest struct {
	NetworkID  string
	EndpointID string
	SandboxKey string
	Options    map[string]any
}

type interfaceName struct {
	SrcName   string
	DstPrefix string
}

type staticRoute struct {
	Destination string
	RouteType   int
	NextHop     string `json:",omitempty"`
}

// Route types of staticRoute.
const (
	routeNextHop   = 0
	routeConnected = 1
)

type joinResponse struct {
	InterfaceName interfaceName
	StaticRoutes  []staticRoute
	// DisableGatewayService: the default route above is the container's
	// way out; libnetwork must not add docker_gwbridge.
	DisableGatewayService bool
}

type errorResponse struct {
	Err string
}
