// Command shadow measures what live shadowing costs the client: sysbench
// oltp_point_select (text protocol, so statements are eligible) through two
// Switchyard processes in front of the same MariaDB, one without [[shadow]]
// and one mirroring a sample to a second MariaDB loaded from a dump of the
// first, run interleaved. It prints QPS and proxy CPU per query for each run
// and the mirror's counters. Everything listens on 127.0.0.1.
//
//	go run ./bench/shadow -duration 60s -rounds 2 -threads 32 -sample 0.1
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/switchyard-db/switchyard/bench/internal/benchstat"
	"github.com/switchyard-db/switchyard/lib/api"
	"github.com/switchyard-db/switchyard/test/testenv"
)

const token = "bench-shadow-token-0123456789abcdef"

func main() {
	duration := flag.Duration("duration", 60*time.Second, "length of one sysbench run")
	rounds := flag.Int("rounds", 2, "runs per proxy (interleaved)")
	threads := flag.Int("threads", 32, "sysbench threads")
	sample := flag.Float64("sample", 0.1, "[[shadow]] sample of the shadowed proxy")
	tables := flag.Int("tables", 4, "sysbench tables")
	size := flag.Int("table-size", 10000, "rows per table")
	proxyBin := flag.String("proxy", "bin/proxy", "Switchyard binary")
	profile := flag.String("profile", "", "write a CPU profile of the shadowed proxy's first run here")
	capture := flag.Bool("capture", false, "measure a running traffic capture instead of shadowing: the second proxy captures during its runs")
	workload := flag.String("workload", "oltp_point_select", "sysbench workload")
	rate := flag.Int("rate", 0, "sysbench --rate: a fixed offered load in transactions per second (0: as fast as it goes)")
	flag.Parse()
	dir, err := os.MkdirTemp("", "switchyard-bench-shadow-")
	check(err)
	defer os.RemoveAll(dir)

	src, err := testenv.LaunchMariaDB(filepath.Join(dir, "src"), testenv.MariaDBOptions{})
	check(err)
	defer src.Close()
	dst, err := testenv.LaunchMariaDB(filepath.Join(dir, "dst"), testenv.MariaDBOptions{})
	check(err)
	defer dst.Close()

	sbConn := func(addr string) []string {
		host, port, _ := net.SplitHostPort(addr)
		return []string{"--mysql-host=" + host, "--mysql-port=" + port, "--mysql-user=" + testenv.NativeUser,
			"--mysql-password=" + testenv.NativePassword, "--mysql-db=sbtest",
			"--tables=" + strconv.Itoa(*tables), "--table-size=" + strconv.Itoa(*size)}
	}
	for _, m := range []*testenv.MariaDB{src, dst} {
		run("mariadb", myArgs(m, "-e", "CREATE DATABASE sbtest")...)
	}
	log.Printf("sysbench prepare on the source")
	run("sysbench", append([]string{"oltp_point_select"}, append(sbConn(src.Addr()), "--threads=4", "prepare")...)...)
	log.Printf("mariadb-dump source | mariadb target")
	dump := output("mariadb-dump", myArgs(src, "sbtest")...)
	cmd := exec.Command("mariadb", myArgs(dst, "sbtest")...)
	cmd.Stdin = bytes.NewReader(dump)
	out, err := cmd.CombinedOutput()
	if err != nil {
		log.Fatalf("loading the dump: %v: %s", err, out)
	}

	plain := startProxy(*proxyBin, dir, "plain", src, dst, "")
	defer plain.stop()
	extra := fmt.Sprintf(
		"[[shadow]]\nname = \"bench\"\nsource = \"main\"\ntarget = \"canary\"\nsample = %v\nuser = %q\npassword = %q\n",
		*sample, testenv.NativeUser, testenv.NativePassword)
	name := "shadowed"
	if *capture {
		capDir := filepath.Join(dir, "captures")
		check(os.MkdirAll(capDir, 0o755))
		extra, name = fmt.Sprintf("[traffic]\ncapture-dir = %q\n", capDir), "capture"
	}
	shadowed := startProxy(*proxyBin, dir, name, src, dst, extra)
	defer shadowed.stop()

	type result struct {
		name     string
		qps      float64
		cpuPerQ  float64
		dstPerQ  float64
		p95      string
		errCount string
	}
	var results []result
	for r := 0; r < *rounds; r++ {
		order := []*proxyProc{plain, shadowed}
		if r%2 == 1 {
			order = []*proxyProc{shadowed, plain}
		}
		for _, p := range order {
			if *capture && p == shadowed {
				do("POST", p.api+"/api/v1/traffic/capture", `{"cluster": "main", "duration": "30m"}`)
			}
			cpu0, dst0 := procCPU(p.cmd.Process.Pid), procCPU(dst.Pid())
			var prof chan []byte
			if *profile != "" && r == 0 && p == shadowed {
				prof = make(chan []byte, 1)
				go func() { prof <- get(p.api + fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(duration.Seconds())-2)) }()
			}
			out := output("sysbench", append([]string{*workload}, append(sbConn(p.addr),
				"--threads="+strconv.Itoa(*threads), "--time="+strconv.Itoa(int(duration.Seconds())),
				"--db-ps-mode=disable", "--report-interval=0", "--rate="+strconv.Itoa(*rate), "run")...)...)
			cpu, dstCPU := procCPU(p.cmd.Process.Pid)-cpu0, procCPU(dst.Pid())-dst0
			if *capture && p == shadowed {
				log.Printf("capture: %s", do("DELETE", p.api+"/api/v1/traffic/capture", ""))
			}
			if prof != nil {
				check(os.WriteFile(*profile, <-prof, 0o644))
			}
			qps, queries := parse(out, `queries:\s+(\d+)\s+\(([\d.]+) per sec`)
			p95, _ := parse(out, `95th percentile:\s+([\d.]+)`)
			errs, _ := parse(out, `ignored errors:\s+(\d+)`)
			res := result{name: p.name, qps: qps, cpuPerQ: cpu.Seconds() * 1e6 / queries, dstPerQ: dstCPU.Seconds() * 1e6 / queries,
				p95: fmt.Sprint(p95), errCount: fmt.Sprint(errs)}
			results = append(results, res)
			log.Printf("round %d %-8s %.0f q/s, %.1f µs proxy CPU and %.1f µs target MariaDB CPU per query, p95 %s ms, errors %s",
				r+1, p.name, res.qps, res.cpuPerQ, res.dstPerQ, res.p95, res.errCount)
		}
	}
	var sum = map[string]float64{}
	for _, r := range results {
		sum[r.name] += r.qps
	}
	fmt.Printf("\nmean QPS: plain %.0f, %s %.0f (%.1f%%)\n", sum["plain"]/float64(*rounds), name, sum[name]/float64(*rounds),
		100*(sum[name]-sum["plain"])/sum["plain"])
	if *capture {
		return
	}
	st := shadowStatus(shadowed.api)
	b, _ := json.MarshalIndent(st, "", "  ")
	fmt.Printf("mirror: %s\n", b)
}

func myArgs(m *testenv.MariaDB, extra ...string) []string {
	host, port, _ := net.SplitHostPort(m.Addr())
	return append([]string{"-h", host, "-P", port, "-u", testenv.NativeUser, "-p" + testenv.NativePassword}, extra...)
}

type proxyProc struct {
	name, addr, api string
	cmd             *exec.Cmd
}

func startProxy(bin, dir, name string, src, dst *testenv.MariaDB, extra string) *proxyProc {
	addr, apiAddr := freeAddr(), freeAddr()
	cfg := fmt.Sprintf("[proxy]\naddr = %q\ndefault-cluster = \"main\"\n\n[api]\naddr = %q\ntoken = %q\n\n[log]\nlevel = \"warn\"\n\n"+
		"[[cluster]]\nname = \"main\"\ninstances = [%q]\n\n[[cluster]]\nname = \"canary\"\ninstances = [%q]\n\n%s",
		addr, apiAddr, token, src.Addr(), dst.Addr(), extra)
	path := filepath.Join(dir, name+".toml")
	check(os.WriteFile(path, []byte(cfg), 0o600))
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	check(err)
	cmd := exec.Command(bin, "--config", path)
	cmd.Stdout, cmd.Stderr = logf, logf
	check(cmd.Start())
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if i > 300 {
			log.Fatalf("proxy %s did not start", name)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return &proxyProc{name: name, addr: addr, api: "http://" + apiAddr, cmd: cmd}
}

// procCPU is a process's user+system CPU time so far.
func procCPU(pid int) time.Duration {
	d, err := benchstat.ProcCPU(pid)
	check(err)
	return d
}

func (p *proxyProc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
	}
}

func get(url string) []byte { return do("GET", url, "") }

func do(method, url, body string) []byte {
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	check(err)
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		log.Fatalf("%s %s: %s: %s", method, url, resp.Status, out)
	}
	return out
}

func shadowStatus(base string) api.ShadowList {
	body := get(base + "/api/v1/shadow")
	var l api.ShadowList
	check(json.Unmarshal(body, &l))
	for i := range l.Shadows {
		if len(l.Shadows[i].Digests) > 5 {
			l.Shadows[i].Digests = l.Shadows[i].Digests[:5]
		}
	}
	return l
}

func freeAddr() string {
	port, err := testenv.PickFreePort()
	check(err)
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

func parse(out []byte, re string) (float64, float64) {
	m := regexp.MustCompile(re).FindSubmatch(out)
	if m == nil {
		return 0, 0
	}
	a, _ := strconv.ParseFloat(string(m[len(m)-1]), 64)
	b, _ := strconv.ParseFloat(string(m[1]), 64)
	return a, b
}

func run(name string, args ...string) { _ = output(name, args...) }

func output(name string, args ...string) []byte {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		log.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
