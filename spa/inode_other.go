//go:build !unix

package spa

import "os"

func inodeOf(os.FileInfo) uint64 { return 0 }
