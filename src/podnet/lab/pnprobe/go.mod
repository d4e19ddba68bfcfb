module podnet.local/pnprobe

go 1.22
