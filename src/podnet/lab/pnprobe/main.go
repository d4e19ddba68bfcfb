// pnprobe: the lab's test server and client, one static binary in the test image (there is no
// registry here to pull agnhost from).
//
//	pnprobe serve                       answer on TCP and UDP ports 80 and 81 with the hostname
//	                                    (HTTP on TCP: GET / → hostname; UDP: any datagram → hostname)
//	pnprobe probe tcp|udp HOST PORT     one request; prints the answer, exit 1 if none within -t
//	pnprobe pause                       the pod sandbox's process: sleeps until SIGTERM/SIGINT
//
// TCP answers are HTTP so `wget -qO- http://POD/` and Services' clients work as well.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: pnprobe serve | pnprobe probe [-t SECONDS] tcp|udp HOST PORT")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "serve":
		serve()
	case "probe":
		os.Exit(probe(os.Args[2:]))
	case "pause":
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
		<-stop
	default:
		fmt.Fprintf(os.Stderr, "pnprobe: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}

func serve() {
	name, _ := os.Hostname()
	answer := func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, name) }
	for _, port := range []string{"80", "81"} {
		go func(port string) {
			mux := http.NewServeMux()
			mux.HandleFunc("/", answer)
			fmt.Fprintln(os.Stderr, http.ListenAndServe(":"+port, mux))
			os.Exit(1)
		}(port)
		go func(port string) {
			conn, err := net.ListenPacket("udp", ":"+port)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			buf := make([]byte, 2048)
			for {
				_, peer, err := conn.ReadFrom(buf)
				if err == nil {
					conn.WriteTo([]byte(name+"\n"), peer)
				}
			}
		}(port)
	}
	select {}
}

func probe(args []string) int {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	timeout := fs.Float64("t", 2, "seconds to wait for the answer")
	if fs.Parse(args) != nil || fs.NArg() != 3 {
		fmt.Fprintln(os.Stderr, "usage: pnprobe probe [-t SECONDS] tcp|udp HOST PORT")
		return 2
	}
	proto, addr := fs.Arg(0), net.JoinHostPort(fs.Arg(1), fs.Arg(2))
	deadline := time.Now().Add(time.Duration(*timeout * float64(time.Second)))
	conn, err := net.DialTimeout(proto, addr, time.Until(deadline))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer conn.Close()
	conn.SetDeadline(deadline)
	if proto == "udp" {
		_, err = conn.Write([]byte("probe\n"))
	} else {
		_, err = fmt.Fprintf(conn, "GET / HTTP/1.0\r\nHost: %s\r\n\r\n", fs.Arg(1))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var body string
	if proto == "udp" {
		buf := make([]byte, 2048)
		n, err := conn.Read(buf)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		body = string(buf[:n])
	} else {
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(raw)
	}
	fmt.Println(strings.TrimSpace(body))
	return 0
}
