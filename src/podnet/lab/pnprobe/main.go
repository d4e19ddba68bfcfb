// pnprobe: the lab's test server and client, one static binary in the test image (there is no
// registry here to pull agnhost from).
//
//	pnprobe serve                       answer on TCP and UDP ports 80 and 81 with the hostname
//	                                    (HTTP on TCP: GET / → hostname, GET /ip → the client's
//	                                    address as seen here, GET /who → both; UDP: any datagram
//	                                    → hostname)
//	pnprobe probe [-t S] [-s SRC] [-p PATH] tcp|udp HOST PORT
//	                                    one request (from source address SRC); prints the answer,
//	                                    exit 1 if none within -t
//	pnprobe pause                       the pod sandbox's process: sleeps until SIGTERM/SIGINT
//	pnprobe webhook -cert F -key F [-port 8443] [-deny-label KEY]
//	                                    a validating admission webhook over TLS: POST /validate
//	                                    refuses an object carrying the label KEY, allows the rest
//
// TCP answers are HTTP so `wget -qO- http://POD/` and Services' clients work as well.
package main

import (
	"bufio"
	"encoding/json"
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
	case "webhook":
		os.Exit(webhook(os.Args[2:]))
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
	// GET /ip: the client's address as this server sees it (NAT or not, from where)
	client := func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		fmt.Fprintln(w, host)
	}
	for _, port := range []string{"80", "81"} {
		go func(port string) {
			mux := http.NewServeMux()
			mux.HandleFunc("/", answer)
			mux.HandleFunc("/ip", client)
			mux.HandleFunc("/who", func(w http.ResponseWriter, r *http.Request) {
				host, _, _ := net.SplitHostPort(r.RemoteAddr)
				fmt.Fprintln(w, name, host)
			})
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
	source := fs.String("s", "", "source address to bind (as curl --interface ADDRESS)")
	path := fs.String("p", "/", "tcp: the HTTP path to GET (/ip: the address the server saw)")
	if fs.Parse(args) != nil || fs.NArg() != 3 {
		fmt.Fprintln(os.Stderr, "usage: pnprobe probe [-t SECONDS] [-s SOURCE] tcp|udp HOST PORT")
		return 2
	}
	proto, addr := fs.Arg(0), net.JoinHostPort(fs.Arg(1), fs.Arg(2))
	deadline := time.Now().Add(time.Duration(*timeout * float64(time.Second)))
	dialer := net.Dialer{Deadline: deadline}
	if *source != "" {
		ip := net.ParseIP(*source)
		if ip == nil {
			fmt.Fprintf(os.Stderr, "pnprobe: -s %q is not an address\n", *source)
			return 2
		}
		if proto == "udp" {
			dialer.LocalAddr = &net.UDPAddr{IP: ip}
		} else {
			dialer.LocalAddr = &net.TCPAddr{IP: ip}
		}
	}
	conn, err := dialer.Dial(proto, addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer conn.Close()
	conn.SetDeadline(deadline)
	if proto == "udp" {
		_, err = conn.Write([]byte("probe\n"))
	} else {
		_, err = fmt.Fprintf(conn, "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", *path, fs.Arg(1))
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

// review is the part of an admission.k8s.io/v1 AdmissionReview the webhook reads and answers.
type review struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Request    *struct {
		UID    string `json:"uid"`
		Object struct {
			Metadata struct {
				Name   string            `json:"name"`
				Labels map[string]string `json:"labels"`
			} `json:"metadata"`
		} `json:"object"`
	} `json:"request,omitempty"`
	Response map[string]any `json:"response,omitempty"`
}

func webhook(args []string) int {
	fs := flag.NewFlagSet("webhook", flag.ContinueOnError)
	cert := fs.String("cert", "", "TLS certificate (PEM)")
	key := fs.String("key", "", "TLS key (PEM)")
	port := fs.String("port", "8443", "port")
	deny := fs.String("deny-label", "podnet.io/deny", "refuse objects carrying this label")
	if fs.Parse(args) != nil || *cert == "" || *key == "" {
		fmt.Fprintln(os.Stderr, "usage: pnprobe webhook -cert F -key F [-port 8443] [-deny-label KEY]")
		return 2
	}
	name, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("/validate", func(w http.ResponseWriter, r *http.Request) {
		var rv review
		if err := json.NewDecoder(r.Body).Decode(&rv); err != nil || rv.Request == nil {
			http.Error(w, "not an AdmissionReview", http.StatusBadRequest)
			return
		}
		obj := rv.Request.Object.Metadata
		_, refused := obj.Labels[*deny]
		resp := map[string]any{"uid": rv.Request.UID, "allowed": !refused}
		if refused {
			resp["status"] = map[string]any{"code": 403,
				"message": fmt.Sprintf("refused by pnprobe webhook %s: %s carries %s", name, obj.Name, *deny)}
		}
		fmt.Fprintf(os.Stderr, "webhook: %s allowed=%v\n", obj.Name, !refused)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(review{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview", Response: resp})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, name) })
	fmt.Fprintln(os.Stderr, http.ListenAndServeTLS(":"+*port, *cert, *key, mux))
	return 1
}
