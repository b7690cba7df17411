//go:build linux

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// browser is headless Chromium driven over the DevTools protocol on a pipe
// (--remote-debugging-pipe: JSON messages ending in a NUL byte, commands on
// fd 3, answers and events on fd 4). It answers HTTP auth challenges the
// way a person answers the browser's login dialog.
type browser struct {
	t   *testing.T
	cmd *exec.Cmd
	in  *os.File // our end of the browser's fd 3

	wmu    sync.Mutex
	nextID int

	mu      sync.Mutex
	waiting map[int]chan cdpMessage
	// challenges are the auth challenges the browser met, by URL.
	challenges []string
	// requested are the URLs the page asked for.
	requested []string

	events chan cdpMessage
	done   chan struct{}
	wg     sync.WaitGroup

	user, pass string // pass "" cancels the dialog
	session    string
}

type cdpMessage struct {
	ID        int             `json:"id"`
	Method    string          `json:"method"`
	SessionID string          `json:"sessionId"`
	Params    json.RawMessage `json:"params"`
	Result    json.RawMessage `json:"result"`
	Error     *struct {
		Message string `json:"message"`
	} `json:"error"`
}

// startBrowser launches Chromium; user and pass answer login dialogs (pass
// "" cancels them, as a person without the token would).
func startBrowser(t *testing.T, bin, user, pass string) *browser {
	t.Helper()
	dir := t.TempDir()
	cmdR, cmdW, err := os.Pipe()
	require.NoError(t, err)
	outR, outW, err := os.Pipe()
	require.NoError(t, err)
	cmd := exec.Command(bin,
		"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--no-default-browser-check", "--disable-extensions",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+filepath.Join(dir, "profile"), "--remote-debugging-pipe", "about:blank")
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+dir, "XDG_CACHE_HOME="+dir)
	cmd.ExtraFiles = []*os.File{cmdR, outW} // fd 3, fd 4
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	require.NoError(t, cmd.Start())
	_ = cmdR.Close()
	_ = outW.Close()
	b := &browser{t: t, cmd: cmd, in: cmdW, waiting: map[int]chan cdpMessage{}, events: make(chan cdpMessage, 256),
		done: make(chan struct{}), user: user, pass: pass}
	t.Cleanup(func() {
		close(b.done)
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		_ = cmdW.Close()
		_ = outR.Close()
		b.wg.Wait()
	})
	b.wg.Add(2)
	go b.read(outR)
	go b.handleEvents()
	return b
}

func (b *browser) read(r *os.File) {
	defer b.wg.Done()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		for i, c := range data {
			if c == 0 {
				return i + 1, data[:i], nil
			}
		}
		if atEOF && len(data) > 0 {
			return len(data), data, nil
		}
		return 0, nil, nil
	})
	for sc.Scan() {
		var m cdpMessage
		if json.Unmarshal(sc.Bytes(), &m) != nil {
			continue
		}
		if m.Method != "" {
			select {
			case b.events <- m:
			case <-b.done:
				return
			}
			continue
		}
		b.mu.Lock()
		ch := b.waiting[m.ID]
		delete(b.waiting, m.ID)
		b.mu.Unlock()
		if ch != nil {
			ch <- m
		}
	}
}

// handleEvents lets paused requests go on and answers auth challenges.
func (b *browser) handleEvents() {
	defer b.wg.Done()
	for {
		var ev cdpMessage
		select {
		case ev = <-b.events:
		case <-b.done:
			return
		}
		var p struct {
			RequestID string `json:"requestId"`
			Request   struct {
				URL string `json:"url"`
			} `json:"request"`
			AuthChallenge struct {
				Scheme string `json:"scheme"`
				Realm  string `json:"realm"`
			} `json:"authChallenge"`
		}
		_ = json.Unmarshal(ev.Params, &p)
		switch ev.Method {
		case "Fetch.requestPaused":
			b.mu.Lock()
			b.requested = append(b.requested, p.Request.URL)
			b.mu.Unlock()
			b.send(ev.SessionID, "Fetch.continueRequest", map[string]any{"requestId": p.RequestID})
		case "Fetch.authRequired":
			b.mu.Lock()
			b.challenges = append(b.challenges, p.AuthChallenge.Scheme+" "+p.Request.URL)
			b.mu.Unlock()
			resp := map[string]any{"response": "CancelAuth"}
			if b.pass != "" {
				resp = map[string]any{"response": "ProvideCredentials", "username": b.user, "password": b.pass}
			}
			b.send(ev.SessionID, "Fetch.continueWithAuth", map[string]any{"requestId": p.RequestID, "authChallengeResponse": resp})
		}
	}
}

// send writes a command and returns its id.
func (b *browser) send(session, method string, params any) (int, chan cdpMessage) {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	b.nextID++
	id := b.nextID
	ch := make(chan cdpMessage, 1)
	b.mu.Lock()
	b.waiting[id] = ch
	b.mu.Unlock()
	msg := map[string]any{"id": id, "method": method, "params": params}
	if session != "" {
		msg["sessionId"] = session
	}
	data, _ := json.Marshal(msg)
	_, _ = b.in.Write(append(data, 0))
	return id, ch
}

// call sends a command and waits for its answer.
func (b *browser) call(session, method string, params any, result any) {
	b.t.Helper()
	_, ch := b.send(session, method, params)
	select {
	case m := <-ch:
		require.Nil(b.t, m.Error, "%s: %+v", method, m.Error)
		if result != nil {
			require.NoError(b.t, json.Unmarshal(m.Result, result))
		}
	case <-time.After(60 * time.Second):
		require.Failf(b.t, "no answer from chromium", "%s", method)
	}
}

// open attaches to the browser's tab, intercepts its requests (to answer
// auth challenges) and navigates to pageURL.
func (b *browser) open(pageURL string) {
	b.t.Helper()
	var created struct {
		TargetID string `json:"targetId"`
	}
	b.call("", "Target.createTarget", map[string]any{"url": "about:blank"}, &created)
	var attached struct {
		SessionID string `json:"sessionId"`
	}
	b.call("", "Target.attachToTarget", map[string]any{"targetId": created.TargetID, "flatten": true}, &attached)
	b.session = attached.SessionID
	b.call(b.session, "Fetch.enable", map[string]any{"handleAuthRequests": true,
		"patterns": []map[string]any{{"urlPattern": "*"}}}, nil)
	b.call(b.session, "Page.navigate", map[string]any{"url": pageURL}, nil)
}

// eval runs a JavaScript expression in the page and returns its string value.
func (b *browser) eval(expr string) string {
	b.t.Helper()
	var res struct {
		Result struct {
			Value any `json:"value"`
		} `json:"result"`
	}
	b.call(b.session, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}, &res)
	return fmt.Sprint(res.Result.Value)
}

// waitDOM polls the page until ready says its DOM is done, and returns it.
func (b *browser) waitDOM(ready func(d *dom) bool) *dom {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var d *dom
	for {
		// Only a parsed document: a snapshot taken while the parser is still
		// at work can hold an element whose text has not arrived yet (CI
		// once saw the sign-in page's <h1></h1> empty).
		html := b.eval("document.readyState === 'complete' && document.documentElement ? document.documentElement.outerHTML : ''")
		d = parseDOM(html)
		if html != "" && ready(d) {
			return d
		}
		select {
		case <-ctx.Done():
			require.Failf(b.t, "the page never got ready", "auth challenges: %q\nDOM:\n%s", b.authChallenges(), d.body)
			return d
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// requests are the URLs the browser asked for.
func (b *browser) requests() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.requested...)
}

// authChallenges are the login dialogs the browser met.
func (b *browser) authChallenges() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.challenges...)
}
