package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/stretchr/testify/require"
)

const minimalCluster = `
[[cluster]]
name = "east"
instances = ["127.0.0.1:3306"]
`

func writeFile(t *testing.T, dir, name string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, []byte("pem"), 0o600))
	return path
}

// errorLines splits a joined error into its messages.
func errorLines(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

func TestLoadSample(t *testing.T) {
	c, err := Load("../../conf/proxy.toml")
	require.NoError(t, err)
	want := NewDefault()
	want.Proxy.ProxyProtocolTrustedCIDRs = []string{}
	want.Coordination.EtcdEndpoints = []string{}
	want.API.ClientCerts = ClientCerts{Admin: []string{}, Read: []string{}}
	want.Clusters = []Cluster{{Name: "default", Instances: []string{"127.0.0.1:3306"}, DrainTimeout: NewDuration(DefaultDrainTimeout)}}
	require.Equal(t, want, c, "the sample must show the defaults")
}

func TestLoadErrorsNamePath(t *testing.T) {
	dir := t.TempDir()

	_, err := Load(filepath.Join(dir, "missing.toml"))
	require.ErrorIs(t, err, os.ErrNotExist)
	require.NotErrorIs(t, err, ErrInvalid)

	path := filepath.Join(dir, "bad.toml")
	require.NoError(t, os.WriteFile(path, []byte("[proxy]\naddr = \"x\"\nmax-connections = -1\n"), 0o600))
	_, err = Load(path)
	require.ErrorIs(t, err, ErrInvalid)
	require.Equal(t, []string{
		path + `: line 2: proxy.addr "x": missing port in address`,
		path + `: line 3: proxy.max-connections -1: must be 0 (unlimited) or more`,
		path + `: at least one [[cluster]] is required`,
	}, errorLines(err))

	require.NoError(t, os.WriteFile(path, []byte("[proxy\n"), 0o600))
	_, err = Load(path)
	require.ErrorContains(t, err, path+": line 1: syntax error: ")
}

func TestParseUnknownKeys(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string
	}{
		{
			name: "typo in table",
			doc:  "[proxy]\nadr = \"127.0.0.1:1\"\n" + minimalCluster,
			want: []string{"line 2: unknown key proxy.adr"},
		},
		{
			name: "unknown table is reported once, not per key",
			doc:  "[proxy]\n\n[metrics]\naddr = \"x\"\nport = 1\n" + minimalCluster,
			want: []string{"line 3: unknown key metrics"},
		},
		{
			name: "unknown dotted key",
			doc:  "proxy.bogus.deep = 1\n" + minimalCluster,
			// MetaData lists only the full key, not the implicit table proxy.bogus.
			want: []string{"line 1: unknown key proxy.bogus.deep"},
		},
		{
			name: "in the second cluster, named by index",
			doc: minimalCluster + `
[[cluster]]
name = "west"
instances = ["127.0.0.1:3307"]
weight = 3
`,
			want: []string{"line 9: unknown key cluster[1].weight"},
		},
		{
			name: "in two clusters",
			doc:  "[[cluster]]\nname = \"a\"\ninstance = [\"h:1\"]\n[[cluster]]\nname = \"b\"\ninstance = [\"h:2\"]\n",
			want: []string{
				"line 3: unknown key cluster[0].instance",
				"line 6: unknown key cluster[1].instance",
				// Without an instances key the line is the cluster's header.
				"line 1: cluster \"a\": set instances (static backends) or etcd-endpoints",
				"line 4: cluster \"b\": set instances (static backends) or etcd-endpoints",
			},
		},
		{
			name: "inline table",
			doc:  "security = { server-tls = { cert = \"\", pem = \"x\" } }\n" + minimalCluster,
			want: []string{"line 1: unknown key security.server-tls.pem"},
		},
		{
			name: "quoted key",
			doc:  "[log]\n\"log level\" = \"debug\"\n" + minimalCluster,
			want: []string{`line 2: unknown key log."log level"`},
		},
		{
			name: "top level, with check errors reported too",
			doc:  "verbose = true\n[log]\nlevel = \"loud\"\n" + minimalCluster,
			want: []string{
				"line 1: unknown key verbose",
				`line 3: log.level "loud": must be one of debug, info, warn, error`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.doc))
			require.Nil(t, c)
			require.ErrorIs(t, err, ErrInvalid)
			require.Equal(t, tt.want, errorLines(err))
		})
	}
}

func TestParseSyntaxErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want string
	}{
		{name: "unclosed table", doc: "[proxy]\naddr = \"x:1\"\n[log\n", want: "line 3: syntax error: "},
		{name: "unclosed table on line 1", doc: "[proxy\n", want: "line 1: syntax error: "},
		{name: "missing value", doc: "[proxy]\n\naddr =\n", want: "line 3: syntax error: "},
		{name: "unterminated string", doc: "[log]\nlevel = \"info\nformat = \"json\"\n", want: "line 2: syntax error: "},
		{name: "duplicate key", doc: "[log]\nlevel = \"info\"\nlevel = \"debug\"\n", want: "line 3: syntax error: "},
		{name: "integer overflow", doc: "[proxy]\nmax-connections = 99999999999999999999\n", want: "line 2: syntax error: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.doc))
			require.Nil(t, c)
			require.ErrorIs(t, err, ErrInvalid)
			require.ErrorContains(t, err, tt.want)
			require.Len(t, errorLines(err), 1, "parsing stops at the first syntax error")
			var pe toml.ParseError
			require.ErrorAs(t, err, &pe, "the decoder's error stays available for its excerpt")
		})
	}
}

func TestParseTypeErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string
	}{
		{
			name: "scalars",
			doc:  "[proxy]\nmax-connections = \"many\"\naddr = 6000\n[security]\nrequire-backend-tls = \"yes\"\n[log]\nlevel = 1.5\n",
			want: []string{
				"line 2: proxy.max-connections: must be an integer, not a string",
				"line 3: proxy.addr: must be a string, not an integer",
				"line 5: security.require-backend-tls: must be true or false, not a string",
				"line 7: log.level: must be a string, not a float",
				"at least one [[cluster]] is required",
			},
		},
		{
			name: "tables and arrays",
			doc:  "proxy = 1\n[log]\nfile = { path = \"x\" }\n[[cluster]]\ninstances = \"h:1\"\n",
			want: []string{
				"line 1: proxy: must be a table, not an integer",
				"line 3: log.file: must be a string, not a table",
				"line 4: cluster[0].name must not be empty",
				"line 5: cluster[0].instances: must be an array, not a string",
			},
		},
		{
			name: "cluster written as a table",
			doc:  "[cluster]\nname = \"a\"\n",
			want: []string{"line 1: cluster: must be an array of tables, written [[cluster]], not a table"},
		},
		{
			name: "each bad element at its own line",
			doc:  "[[cluster]]\nname = 1\n[[cluster]]\nname = \"b\"\ninstances = [\"h:1\", 2]\n[proxy]\nproxy-protocol-trusted-cidrs = [\n  \"10.0.0.0/8\",\n  false,\n]\n",
			want: []string{
				"line 1: cluster[0]: set instances (static backends) or etcd-endpoints",
				"line 2: cluster[0].name: must be a string, not an integer",
				"line 5: cluster[1].instances[1]: must be a string, not an integer",
				"line 9: proxy.proxy-protocol-trusted-cidrs[1]: must be a string, not a boolean",
			},
		},
		{
			name: "date-time",
			doc:  "[proxy]\naddr = 1979-05-27T07:32:00Z\n",
			want: []string{"line 2: proxy.addr: must be a string, not a date-time", "at least one [[cluster]] is required"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.doc))
			require.Nil(t, c)
			require.ErrorIs(t, err, ErrInvalid)
			require.Equal(t, tt.want, errorLines(err))
		})
	}
}

// A value of the wrong type does not hide the file's other problems (issue
// 14): each is reported with its line, in file order, and the bad value's
// key is not reported a second time by validation.
func TestParseTypeErrorKeepsOtherErrors(t *testing.T) {
	doc := `[proxy]
addr = "127.0.0.1:6000"
default-cluster = "nope"
[health-check]
interval = "1 second"
timeout = 5
[log]
level = "loud"
[[cluster]]
name = "a"
instances = ["127.0.0.1:3306"]
bogus = 1
[[cluster]]
name = 7
instances = ["127.0.0.1:3307"]
`
	c, err := Parse([]byte(doc))
	require.Nil(t, c)
	require.ErrorIs(t, err, ErrInvalid)
	got := errorLines(err)
	require.Equal(t, []string{
		"line 3: proxy.default-cluster \"nope\": no [[cluster]] has that name",
		"line 5: health-check.interval: invalid duration \"1 second\": want a number with a unit, such as \"15s\" or \"1m30s\"",
		`line 6: health-check.timeout: must be a duration string such as "15s", not an integer`,
		"line 8: log.level \"loud\": must be one of debug, info, warn, error",
		"line 12: unknown key cluster[0].bogus",
		"line 14: cluster[1].name: must be a string, not an integer",
	}, got)
}

func TestParseNormalizes(t *testing.T) {
	doc := `
[proxy]
addr = " 127.0.0.1:7000 "
proxy-protocol = " v2 "
proxy-protocol-trusted-cidrs = [" 10.0.0.0/8 "]
[log]
level = " debug"
format = "json "
[[cluster]]
name = " east "
instances = [" 127.0.0.1:3306 "]
`
	c, err := Parse([]byte(doc))
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:7000", c.Proxy.Addr)
	require.Equal(t, "v2", c.Proxy.ProxyProtocol)
	require.Equal(t, []string{"10.0.0.0/8"}, c.Proxy.ProxyProtocolTrustedCIDRs)
	require.Equal(t, Log{Level: "debug", Format: "json"}, c.Log)
	require.Equal(t, []Cluster{{Name: "east", Instances: []string{"127.0.0.1:3306"}, DrainTimeout: NewDuration(DefaultDrainTimeout)}}, c.Clusters)
}

// TestParseIntoFreshDefaults guards against decoding over a previous config:
// BurntSushi/toml keeps absent keys and reuses slice elements, so a removed cluster
// or key would survive a reload.
func TestParseIntoFreshDefaults(t *testing.T) {
	first := `
[proxy]
max-connections = 10
connect-timeout = "1s"
[log]
file = "/var/log/switchyard.log"
[[cluster]]
name = "a"
instances = ["10.0.0.1:3306", "10.0.0.2:3306"]
[[cluster]]
name = "b"
instances = ["10.0.0.3:3306"]
`
	// Cluster a is removed; b no longer lists its own instances under the same
	// element index that a's used to occupy, and the other keys are deleted.
	second := `
[[cluster]]
name = "b"
instances = ["10.0.0.3:3306"]
`
	c1, err := Parse([]byte(first))
	require.NoError(t, err)
	c2, err := Parse([]byte(second))
	require.NoError(t, err)

	require.Equal(t, []Cluster{{Name: "b", Instances: []string{"10.0.0.3:3306"}, DrainTimeout: NewDuration(DefaultDrainTimeout)}}, c2.Clusters)
	require.Equal(t, NewDefault().Proxy, c2.Proxy)
	require.Equal(t, NewDefault().Log, c2.Log)

	// The first result is untouched and shares nothing with the second.
	require.Len(t, c1.Clusters, 2)
	require.Equal(t, []string{"10.0.0.1:3306", "10.0.0.2:3306"}, c1.Clusters[0].Instances)
	c2.Clusters[0].Instances[0] = "changed:1"
	require.Equal(t, "10.0.0.3:3306", c1.Clusters[1].Instances[0])
}

// TestParseNoLeakBetweenElements: a key set on one [[cluster]] must not appear on
// another that omits it.
func TestParseNoLeakBetweenElements(t *testing.T) {
	doc := `
[[cluster]]
name = "a"
instances = ["10.0.0.1:3306"]
[[cluster]]
name = "b"
`
	_, err := Parse([]byte(doc))
	require.Equal(t, []string{`line 5: cluster "b": set instances (static backends) or etcd-endpoints`}, errorLines(err))
}

func TestParseErrorIsInvalid(t *testing.T) {
	for _, doc := range []string{"[", "x = 1\n" + minimalCluster, "[log]\nlevel = 1\n", ""} {
		_, err := Parse([]byte(doc))
		require.ErrorIs(t, err, ErrInvalid, doc)
		var p *problem
		require.True(t, errors.As(err, &p), doc)
	}
}

func TestParseClustersAndRoutes(t *testing.T) {
	c, err := Parse([]byte(`
[proxy]
default-cluster = "east"
user-prefix-routing = true
labels = { zone = "a" }

[[cluster]]
name = "east"
etcd-endpoints = ["127.0.0.1:2379"]
etcd-tls = { skip-verify = true }
labels = { zone = "us-east-1a" }

[[cluster]]
name = "west"
instances = ["127.0.0.1:3306"]

[[route]]
cluster = "west"
ports = [6001]
users = ["app_*"]
`))
	require.NoError(t, err)
	require.Equal(t, DefaultTopologyPrefix, c.Clusters[0].TopologyPrefix, "etcd clusters default to TiDB's prefix")
	require.True(t, c.Clusters[0].UsesEtcd())
	require.True(t, c.Clusters[0].EtcdTLS.SkipVerify)
	require.Equal(t, map[string]string{"zone": "us-east-1a"}, c.Clusters[0].Labels)
	require.Empty(t, c.Clusters[1].TopologyPrefix)
	require.Equal(t, []Route{{Cluster: "west", Ports: []int{6001}, Users: []string{"app_*"}}}, c.Routes)
	require.Equal(t, "a", c.Proxy.Labels["zone"])

	_, err = Parse([]byte("[[cluster]]\nname = \"east\"\ninstances = [\"h:1\"]\nlabels = { zone = 1 }\n"))
	require.EqualError(t, err, "line 4: cluster[0].labels.zone: must be a string, not an integer")
	_, err = Parse([]byte("[[cluster]]\nname = \"east\"\ninstances = [\"h:1\"]\n[[route]]\ncluster = \"east\"\nport = [1]\n"))
	require.EqualError(t, err, "line 6: unknown key route[0].port")
}

// An API beyond loopback without a credential is refused with the line of
// api.addr, and every other problem of the file is still reported.
func TestParseOpenAPIRefusedWithLine(t *testing.T) {
	_, err := Parse([]byte(`[api]
token = ""
addr = "0.0.0.0:3080"
public-endpoints = ["/api/v1/sessions"]

[[cluster]]
name = "a"
instances = ["127.0.0.1:3306"]
`))
	require.ErrorIs(t, err, ErrInvalid)
	require.Equal(t, []string{
		`line 3: api.addr "0.0.0.0:3080" listens beyond this host with no credential, so anyone who can reach it could read sessions and the config: set api.token (and api.read-token), or client certificates (api.tls.ca and api.client-certs), or listen on 127.0.0.1`,
		`line 4: api.public-endpoints[0] "/api/v1/sessions": only /livez, /readyz, /metrics, /api/v1/ha/leader can be public`,
	}, errorLines(err))

	// A bad token is reported without its value.
	_, err = Parse([]byte("[api]\nread-token = \"two words\"\n[[cluster]]\nname = \"a\"\ninstances = [\"127.0.0.1:3306\"]\n"))
	require.Equal(t, []string{`line 2: api.read-token must be printable ASCII without spaces (generate one with: openssl rand -hex 32)`}, errorLines(err))
	require.NotContains(t, err.Error(), "two words", "a token never reaches an error message")

	// The default is loopback, where no token is needed.
	c, err := Parse([]byte("[[cluster]]\nname = \"a\"\ninstances = [\"127.0.0.1:3306\"]\n"))
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:3080", c.API.Addr)
	require.Equal(t, DefaultPublicEndpoints, c.API.PublicEndpoints)
}

// public-endpoints = [] closes every endpoint (it does not fall back to the
// default), and parsing never changes the default list itself.
func TestParsePublicEndpoints(t *testing.T) {
	c, err := Parse([]byte("[api]\npublic-endpoints = []\n[[cluster]]\nname = \"a\"\ninstances = [\"127.0.0.1:3306\"]\n"))
	require.NoError(t, err)
	require.Empty(t, c.API.PublicEndpoints)
	c, err = Parse([]byte("[api]\npublic-endpoints = [\"/livez\"]\n[[cluster]]\nname = \"a\"\ninstances = [\"127.0.0.1:3306\"]\n"))
	require.NoError(t, err)
	require.Equal(t, []string{"/livez"}, c.API.PublicEndpoints)
	require.Equal(t, []string{"/livez", "/readyz", "/metrics", "/api/v1/ha/leader"}, DefaultPublicEndpoints)
	require.Equal(t, DefaultPublicEndpoints, NewDefault().API.PublicEndpoints)
}
