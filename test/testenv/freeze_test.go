package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const spinnerEnv = "SWITCHYARD_TESTENV_SPINNER"

// spinnerMain is the child of TestFreezeStopsEveryThread: threads that never
// block, so that each one has to be stopped by the kernel.
func spinnerMain() {
	runtime.GOMAXPROCS(4)
	for range 4 {
		go func() {
			for {
			}
		}()
	}
	fmt.Println("spinning")
	time.Sleep(time.Minute)
	os.Exit(0)
}

func TestFreezeStopsEveryThread(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), spinnerEnv+"=1")
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	buf := make([]byte, 9)
	_, err = out.Read(buf)
	require.NoError(t, err)
	pid := cmd.Process.Pid
	n, err := runningThreads(pid)
	require.NoError(t, err)
	require.Positive(t, n, "the spinner's threads run before the freeze")

	require.NoError(t, Freeze(pid))
	n, err = runningThreads(pid)
	require.NoError(t, err)
	require.Zero(t, n, "Freeze returned with threads still running")

	require.NoError(t, syscall.Kill(pid, syscall.SIGCONT))
	require.Eventually(t, func() bool {
		n, err := runningThreads(pid)
		return err == nil && n > 0
	}, 10*time.Second, 5*time.Millisecond, "the threads run again after SIGCONT")
}
