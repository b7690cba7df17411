package observer

// ServerInfo is what a backend announces in its greeting, as the health
// prober last read it. The proxy greets clients with what a cluster's
// backends have in common, since it greets before it knows the backend.
type ServerInfo struct {
	// Version is the server version string ("5.5.5-10.11.19-MariaDB...").
	Version string
	// Capability is the greeting's capability flags.
	Capability uint32
	// ExtCapability is MariaDB's extended capability word (zero for MySQL
	// and TiDB, which set CLIENT_MYSQL).
	ExtCapability uint32
	// Charset is the server's default collation id.
	Charset byte
}

// CommonServer returns what the cluster's probed backends have in common:
// the capabilities all of them announce, and the version and collation most
// of them announce (the first backend by address wins a tie). It returns
// nil when no backend has been probed successfully yet.
func (v *ClusterView) CommonServer() *ServerInfo {
	if v == nil {
		return nil
	}
	var infos []*ServerInfo
	for _, b := range v.Backends {
		if b.Health.Server != nil {
			infos = append(infos, b.Health.Server)
		}
	}
	return CommonServer(infos)
}

// CommonServer combines several servers' greetings as ClusterView's method
// does; nil entries are skipped, and nil is returned for none.
func CommonServer(infos []*ServerInfo) *ServerInfo {
	var out *ServerInfo
	versions := map[string]int{}
	charsets := map[byte]int{}
	var bestVersion string
	var bestCharset byte
	for _, in := range infos {
		if in == nil {
			continue
		}
		if out == nil {
			out = &ServerInfo{Capability: in.Capability, ExtCapability: in.ExtCapability}
			bestVersion, bestCharset = in.Version, in.Charset
		} else {
			out.Capability &= in.Capability
			out.ExtCapability &= in.ExtCapability
		}
		versions[in.Version]++
		charsets[in.Charset]++
		if versions[in.Version] > versions[bestVersion] {
			bestVersion = in.Version
		}
		if charsets[in.Charset] > charsets[bestCharset] {
			bestCharset = in.Charset
		}
	}
	if out == nil {
		return nil
	}
	if out.Capability&clientMySQL != 0 {
		// A MySQL server among them: the extended word is not MariaDB's.
		out.ExtCapability = 0
	}
	out.Version, out.Charset = bestVersion, bestCharset
	return out
}

// clientMySQL is mysql.ClientMySQL (the observer does not import the wire
// codec): set by servers without MariaDB's extended capabilities.
const clientMySQL = 1
