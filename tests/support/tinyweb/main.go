// Command tinyweb is the local cluster's smallest task: a static HTTP server in one static
// binary, so an image of it unpacks in a moment even on an emulated (QEMU) VM agent, where the
// Debian task image takes minutes.
//
// It drains on SIGTERM the way docs/lb.md asks of applications: Marathon sends SIGTERM at the
// moment it reports TASK_KILLING, and the load balancers stop routing to the task only once the
// bridge has taken it out of Consul and nginx has reloaded. Until then requests keep arriving,
// so the task keeps answering them for TINYWEB_DRAIN_SECONDS, with /health failing so that a
// health check takes it out too, and only then stops accepting and exits.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

// Longer than any answer this server gives; the bound only matters for a client that stalls,
// which must not keep a killed task from exiting before Marathon's SIGKILL.
const shutdownTimeout = 10 * time.Second

func main() {
	// Lifecycle lines go to stdout, which is where Mesos and Docker collect a task's log.
	log.SetOutput(os.Stdout)
	log.SetFlags(0)
	log.SetPrefix("tinyweb: ")

	drain, err := drainPeriod()
	if err != nil {
		// A typo in the app definition should fail the deployment, not shorten the drain.
		fmt.Fprintln(os.Stderr, "tinyweb:", err)
		os.Exit(2)
	}
	addr := listenAddr()
	body := "tinyweb " + text() + "\n"

	var draining atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		if draining.Load() {
			plain(w, http.StatusServiceUnavailable, "draining")
			return
		}
		plain(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		plain(w, http.StatusOK, body)
	})
	srv := &http.Server{
		Handler: mux,
		// Without it a client that never finishes its header holds a connection for ever.
		ReadHeaderTimeout: 10 * time.Second,
	}

	// Subscribe before listening: a signal that arrives right after the port opens must drain,
	// not kill the process with its default action.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)

	// Bind first, so "listening" is only logged once the port really accepts connections.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tinyweb:", err)
		os.Exit(1)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Printf("listening on %s", ln.Addr())

	select {
	case err := <-served:
		// Serve only returns by itself on a listener failure; Shutdown is not called yet.
		fmt.Fprintln(os.Stderr, "tinyweb:", err)
		os.Exit(1)
	case sig := <-signals:
		// Further signals stay unread: cutting the drain short is the job of Marathon's
		// SIGKILL after the app's taskKillGracePeriodSeconds, not of a second SIGTERM.
		draining.Store(true)
		log.Printf("draining on %s: /health answers 503, serving %s more", sig, drain)
	}
	time.Sleep(drain)

	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		// Requests were cut: say so in the exit code rather than claim a clean stop.
		log.Printf("stopped: requests in progress after %s were cut (%v)", shutdownTimeout, err)
		os.Exit(1)
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Printf("stopped: %v", err)
		os.Exit(1)
	}
	log.Print("stopped")
}

// listenAddr prefers PORT0, the port Marathon assigns to a task's first port; PORT serves the
// platforms that name it so, and 8080 a plain `docker run`.
func listenAddr() string {
	for _, name := range []string{"PORT0", "PORT"} {
		if port := os.Getenv(name); port != "" {
			return ":" + port
		}
	}
	return ":8080"
}

// text tells instances apart in an answer: the hostname is the container's id by default, and
// TINYWEB_TEXT lets a test name the version or instance it expects to hear from.
func text() string {
	if t := os.Getenv("TINYWEB_TEXT"); t != "" {
		return t
	}
	if host, err := os.Hostname(); err == nil {
		return host
	}
	return "unknown"
}

// drainPeriod defaults to 3 s, above the few hundred milliseconds a load balancer takes to stop
// routing to a killed task (docs/lb.md), and below a grace period of 5 s.
func drainPeriod() (time.Duration, error) {
	value := os.Getenv("TINYWEB_DRAIN_SECONDS")
	if value == "" {
		return 3 * time.Second, nil
	}
	seconds, err := strconv.ParseFloat(value, 64)
	// Written as a range check that NaN fails too.
	if err != nil || !(seconds >= 0 && seconds <= 3600) {
		return 0, fmt.Errorf("TINYWEB_DRAIN_SECONDS=%q: want seconds between 0 and 3600", value)
	}
	return time.Duration(seconds * float64(time.Second)), nil
}

func plain(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}
