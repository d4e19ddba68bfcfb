// Command watchers: K simulated podnet agents against one kube-apiserver (issue 35, the API
// server's side).  Each does what an agent's informers do — list (in pages of 500) then watch, with
// bookmarks, Pods, Namespaces, NetworkPolicies and Nodes of the whole cluster — over its own
// HTTP/1.1 connections, as K separate agents would, with an agent's ServiceAccount token.  It keeps
// nothing: a watcher only looks, in each Pod event, for the annotation the bench's writer stamps
// (bench.podnet.io/sent: UnixNano at the PATCH) and records now − sent: the API server's watch
// latency as K agents would see it.  Stdlib only; the Python side (bench/sim_watchers.py) builds,
// starts and reads it.
//
//	watchers -server URL -ca FILE -token-file FILE -k K -spread SECONDS -run SECONDS
//
// Prints one JSON object: list times, events seen, latency percentiles, errors.
package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"
)

var stampKey = []byte(`"bench.podnet.io/sent":"`)

type result struct {
	mu        sync.Mutex
	listSecs  []float64
	latencies []float64
	events    int64
	bytes     int64
	errors    map[string]int
}

func (r *result) fail(what string) {
	r.mu.Lock()
	r.errors[what]++
	r.mu.Unlock()
}

type listPage struct {
	Metadata struct {
		ResourceVersion string `json:"resourceVersion"`
		Continue        string `json:"continue"`
	} `json:"metadata"`
}

type watcher struct {
	server string
	token  string
	client *http.Client
	res    *result
}

func (w *watcher) get(path string) (*http.Response, error) {
	req, err := http.NewRequest("GET", w.server+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+w.token)
	req.Header.Set("Accept", "application/json")
	return w.client.Do(req)
}

// list: every page; the first page's resourceVersion (a paged list is one snapshot).
func (w *watcher) list(path string) (string, error) {
	rv, cont := "", ""
	for {
		q := path + "?limit=500"
		if cont != "" {
			q += "&continue=" + cont
		}
		resp, err := w.get(q)
		if err != nil {
			return "", err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return "", err
		}
		if resp.StatusCode != 200 {
			return "", fmt.Errorf("list %s: %d", path, resp.StatusCode)
		}
		w.res.mu.Lock()
		w.res.bytes += int64(len(body))
		w.res.mu.Unlock()
		var page listPage
		if err := json.Unmarshal(body, &page); err != nil {
			return "", err
		}
		if rv == "" {
			rv = page.Metadata.ResourceVersion
		}
		if page.Metadata.Continue == "" {
			return rv, nil
		}
		cont = page.Metadata.Continue
	}
}

// watch until stop; resumes from the last resourceVersion it saw after a break.
func (w *watcher) watch(path, rv string, pods bool, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		resp, err := w.get(path + "?watch=1&allowWatchBookmarks=true&timeoutSeconds=300&resourceVersion=" + rv)
		if err != nil {
			w.res.fail("watch: " + err.Error())
			time.Sleep(time.Second)
			continue
		}
		if resp.StatusCode != 200 {
			w.res.fail(fmt.Sprintf("watch %s: %d", path, resp.StatusCode))
			resp.Body.Close()
			time.Sleep(time.Second)
			continue
		}
		go func() { <-stop; resp.Body.Close() }()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			line := sc.Bytes()
			now := time.Now().UnixNano()
			w.res.mu.Lock()
			w.res.bytes += int64(len(line))
			w.res.events++
			w.res.mu.Unlock()
			if i := bytes.Index(line, []byte(`"resourceVersion":"`)); i >= 0 {
				j := bytes.IndexByte(line[i+19:], '"')
				if j > 0 {
					rv = string(line[i+19 : i+19+j])
				}
			}
			if !pods {
				continue
			}
			if i := bytes.Index(line, stampKey); i >= 0 {
				rest := line[i+len(stampKey):]
				if j := bytes.IndexByte(rest, '"'); j > 0 {
					if sent, err := strconv.ParseInt(string(rest[:j]), 10, 64); err == nil {
						w.res.mu.Lock()
						w.res.latencies = append(w.res.latencies, float64(now-sent)/1e6)
						w.res.mu.Unlock()
					}
				}
			}
		}
		resp.Body.Close()
	}
}

func pct(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	i := int(q * float64(len(xs)))
	if i >= len(xs) {
		i = len(xs) - 1
	}
	return xs[i]
}

func main() {
	server := flag.String("server", "", "API server URL")
	caFile := flag.String("ca", "", "CA certificate (PEM)")
	tokenFile := flag.String("token-file", "", "bearer token")
	k := flag.Int("k", 50, "watchers")
	spread := flag.Float64("spread", 10, "seconds over which the watchers start")
	run := flag.Float64("run", 30, "seconds of watching after the last watcher listed")
	ready := flag.String("ready-file", "", "written when every watcher has listed and is watching")
	flag.Parse()
	ca, err := os.ReadFile(*caFile)
	if err != nil {
		panic(err)
	}
	tok, err := os.ReadFile(*tokenFile)
	if err != nil {
		panic(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	res := &result{errors: map[string]int{}}
	stop := make(chan struct{})
	var listed sync.WaitGroup
	kinds := []struct {
		path string
		pods bool
	}{{"/api/v1/namespaces", false}, {"/apis/networking.k8s.io/v1/networkpolicies", false},
		{"/api/v1/nodes", false}, {"/api/v1/pods", true}}
	t0 := time.Now()
	for i := 0; i < *k; i++ {
		listed.Add(1)
		go func(i int) {
			time.Sleep(time.Duration(float64(i) / float64(*k) * *spread * float64(time.Second)))
			// its own connections, HTTP/1.1 (as the agent's client): no sharing between agents
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 8,
				TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
			w := &watcher{server: *server, token: string(bytes.TrimSpace(tok)), client: &http.Client{Transport: tr}, res: res}
			start := time.Now()
			rvs := make([]string, len(kinds))
			for n, kd := range kinds {
				for {
					rv, err := w.list(kd.path)
					if err == nil {
						rvs[n] = rv
						break
					}
					res.fail("list: " + err.Error())
					time.Sleep(time.Second)
				}
			}
			res.mu.Lock()
			res.listSecs = append(res.listSecs, time.Since(start).Seconds())
			res.mu.Unlock()
			for n, kd := range kinds {
				go w.watch(kd.path, rvs[n], kd.pods, stop)
			}
			listed.Done()
		}(i)
	}
	listed.Wait()
	allListed := time.Since(t0).Seconds()
	res.mu.Lock()
	res.latencies = res.latencies[:0]
	eventsBefore := res.events
	res.mu.Unlock()
	if *ready != "" {
		os.WriteFile(*ready, []byte("ready\n"), 0o644)
	}
	time.Sleep(time.Duration(*run * float64(time.Second)))
	close(stop)
	res.mu.Lock()
	defer res.mu.Unlock()
	sort.Float64s(res.listSecs)
	sort.Float64s(res.latencies)
	out := map[string]any{
		"k": *k, "all_listed_s": allListed,
		"list_s": map[string]float64{"p50": pct(res.listSecs, 0.5), "p99": pct(res.listSecs, 0.99),
			"max": pct(res.listSecs, 1)},
		"watch_events": res.events - eventsBefore, "stamped_events": len(res.latencies),
		"watch_latency_ms": map[string]float64{"p50": pct(res.latencies, 0.5), "p99": pct(res.latencies, 0.99),
			"max": pct(res.latencies, 1)},
		"bytes_read": res.bytes, "errors": res.errors,
	}
	json.NewEncoder(os.Stdout).Encode(out)
}
