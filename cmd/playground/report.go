package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// report is what printReady needs besides the clusters.
type report struct {
	mainAddr, westAddr string
	apiAddr            string // "" when the proxy serves no API
	apiBackends        bool   // GET apiBackendsPath works
	cfgPath            string
	landed             []string
	tokens             apiTokens
}

// apiBackendsPath lists the backends as the proxy sees them.
const apiBackendsPath = "/api/v1/backends"

// printReady prints where everything is and how to use it. Its last two
// lines are machine-readable: the pids of every child process, then
// "playground ready".
func (p *playground) printReady(r report) {
	w := p.out
	rel := func(path string) string {
		if wd, err := filepath.Abs("."); err == nil {
			if s, err := filepath.Rel(wd, path); err == nil && !strings.HasPrefix(s, "..") {
				return s
			}
		}
		return path
	}
	_, mainPort, _ := net.SplitHostPort(r.mainAddr)
	_, westPort, _ := net.SplitHostPort(r.westAddr)
	line := strings.Repeat("=", 78)

	fmt.Fprintf(w, "\n%s\nSwitchyard playground: 2 clusters, 4 MariaDB servers, 1 proxy (files in %s)\n\n", line, rel(p.dir))
	for _, c := range p.clusters {
		fmt.Fprintf(w, "cluster %s   etcd %s\n", c.name, c.etcd.Endpoint)
		for _, b := range c.backends {
			fmt.Fprintf(w, "  %s  %s  mariadbd pid %-7d zone %s  status http://%s/status\n",
				b.name, b.db.Addr(), b.db.Pid(), b.zone, b.reg.StatusAddr())
		}
	}
	fmt.Fprintf(w, "\nproxy   pid %d   %s (default cluster: east)   %s (route port: west)\n",
		p.proxy.pid(), r.mainAddr, r.westAddr)
	fmt.Fprintf(w, "        config %s   log %s\n", rel(r.cfgPath), rel(p.proxy.logPath))
	if r.apiAddr != "" {
		// The tokens go to this terminal only (never to a log file): this is
		// a local demo, and they are in the config file (mode 0600) anyway.
		fmt.Fprintf(w, "        HTTP API http://%s/   status page: sign in with any user name and the read token\n", r.apiAddr)
		fmt.Fprintf(w, "        API tokens (new every run, also in the config): read %s   admin %s\n", r.tokens.read, r.tokens.admin)
		fmt.Fprintf(w, "        proxyctl reads with the read token, changes with the admin token (make playground builds it):\n")
		fmt.Fprintf(w, "          export SWITCHYARD_API=http://%s SWITCHYARD_TOKEN=%s\n", r.apiAddr, r.tokens.read)
		fmt.Fprintf(w, "          proxyctl: %s --api http://%s clusters\n", proxyctlPath(), r.apiAddr)
		fmt.Fprintf(w, "          SWITCHYARD_TOKEN=%s %s drain on\n", r.tokens.admin, proxyctlPath())
	}
	if r.apiBackends {
		fmt.Fprintf(w, "        curl -H 'Authorization: Bearer %s' http://%s%s   shows every backend as the proxy sees it\n",
			r.tokens.read, r.apiAddr, apiBackendsPath)
	}

	fmt.Fprintf(w, "\nConnect as app / app-pw to database app; SELECT name FROM backend names the server you reached:\n")
	cmds := []struct{ what, port, user string }{
		{"east, the default cluster", mainPort, appUser},
		{"west, by its route port", westPort, appUser},
		{"west, by the user prefix (west.app logs in to west as app)", mainPort, "west." + appUser},
	}
	for _, c := range cmds {
		fmt.Fprintf(w, "  %s:\n    mariadb -h127.0.0.1 -P%s -u%s -p%s %s -e 'SELECT name FROM backend'\n",
			c.what, c.port, c.user, appPassword, appDatabase)
	}
	fmt.Fprintf(w, "  Any MySQL client or driver works the same, e.g. Go's %s:%s@tcp(%s)/%s.\n",
		appUser, appPassword, r.mainAddr, appDatabase)
	fmt.Fprintf(w, "  New sessions spread over the two servers of their cluster; just checked: %s.\n",
		strings.Join(r.landed, ", "))

	fmt.Fprintf(w, "\nTopology as registered in each cluster's etcd (the way TiDB registers: <addr>/info,\n"+
		"and <addr>/ttl under a %s lease the registrar keeps alive; full log in %s):\n",
		registerTTL, rel(p.logFile.Name()))
	for _, c := range p.clusters {
		for _, b := range c.backends {
			fmt.Fprintf(w, "  %s  %s = %s\n", c.name, infoKey(b.db.Addr()), b.regInfo)
		}
	}

	east := p.clusters[0]
	fmt.Fprintf(w, "\nMake a backend disappear:\n  kill %d\n", east.backends[0].db.Pid())
	fmt.Fprintf(w, "  stops %s's mariadbd: its /status fails, and after 3 failed health checks (about 3 s)\n"+
		"  new %s sessions all go to %s.", east.backends[0].name, east.name, east.backends[1].name)
	if r.apiBackends {
		fmt.Fprintf(w, " The API then shows it \"healthy\": false.")
	}
	fmt.Fprintf(w, "\n  Its registration stays: the registrar, like the `proxy register` sidecar, outlives\n"+
		"  the server it registers.\n")
	fmt.Fprintf(w, "\nCtrl-C stops the proxy, the registrations, the MariaDB servers and etcd, in that order.\n%s\n", line)

	pids := make([]string, 0, 4)
	for _, b := range p.backends() {
		pids = append(pids, strconv.Itoa(b.db.Pid()))
	}
	fmt.Fprintf(w, "pids: proxy=%d mariadb=%s\n", p.proxy.pid(), strings.Join(pids, ","))
	fmt.Fprintln(w, "playground ready")
}

// proxyctlPath is how to run proxyctl from the current directory: the one
// built beside this binary (make playground builds both into bin/), or from
// PATH.
func proxyctlPath() string {
	exe, err := os.Executable()
	if err != nil {
		return "proxyctl"
	}
	bin := filepath.Join(filepath.Dir(exe), "proxyctl")
	if _, err := os.Stat(bin); err != nil {
		return "proxyctl"
	}
	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(wd, bin); err == nil && !strings.HasPrefix(rel, "..") {
			return rel
		}
	}
	return bin
}
