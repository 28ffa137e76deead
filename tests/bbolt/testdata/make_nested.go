// Writes nested.db, the fixture of tests/bbolt/test_reader.py: nested buckets (a big one with
// branch pages and an overflow value, an inline one, a bucket in a bucket in a bucket).
// Run: GO111MODULE=off GOPATH=/usr/share/gocode go run make_nested.go nested.db && gzip -9 nested.db
package main

import (
	"fmt"
	"os"
	"strings"

	bolt "go.etcd.io/bbolt"
)

func main() {
	db, err := bolt.Open(os.Args[1], 0600, &bolt.Options{PageSize: 4096})
	if err != nil {
		panic(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		top, err := tx.CreateBucket([]byte("top"))
		if err != nil {
			return err
		}
		if err := top.Put([]byte("a"), []byte("1")); err != nil {
			return err
		}
		big, err := top.CreateBucket([]byte("big"))
		if err != nil {
			return err
		}
		for i := 0; i < 500; i++ {
			k := fmt.Sprintf("k%04d", i)
			if err := big.Put([]byte(k), []byte(strings.Repeat("v", i%50))); err != nil {
				return err
			}
		}
		if err := big.Put([]byte("huge"), []byte(strings.Repeat("h", 10000))); err != nil {
			return err
		}
		small, err := top.CreateBucket([]byte("small"))
		if err != nil {
			return err
		}
		if err := small.Put([]byte("x"), []byte("y")); err != nil {
			return err
		}
		deep, err := big.CreateBucket([]byte("deep"))
		if err != nil {
			return err
		}
		if err := deep.Put([]byte("d"), []byte("e")); err != nil {
			return err
		}
		if _, err := tx.CreateBucket([]byte("empty")); err != nil {
			return err
		}
		return top.Put([]byte("z"), []byte("26"))
	})
	if err != nil {
		panic(err)
	}
}
