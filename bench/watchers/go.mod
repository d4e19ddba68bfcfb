module podnet.local/watchers

go 1.26
