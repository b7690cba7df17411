package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
)

// MariaDBBinaries are the programs StartMariaDB runs.
type MariaDBBinaries struct {
	Server    string // mariadbd (or mysqld)
	InstallDB string // mariadb-install-db (or mysql_install_db)
}

// ErrMariaDBNotInstalled is returned by LookupMariaDB when the server or its installer is missing.
var ErrMariaDBNotInstalled = errors.New("MariaDB is not installed")

// LookupMariaDB finds mariadbd and mariadb-install-db. SWITCHYARD_MARIADBD and
// SWITCHYARD_MARIADB_INSTALL_DB override the search; otherwise PATH is tried, then the
// Debian/RPM locations, because /usr/sbin is often missing from a non-root PATH.
func LookupMariaDB() (MariaDBBinaries, error) {
	var b MariaDBBinaries
	var err error
	if b.Server, err = lookBinary("SWITCHYARD_MARIADBD",
		"mariadbd", "mysqld", "/usr/sbin/mariadbd", "/usr/sbin/mysqld", "/usr/libexec/mariadbd", "/usr/libexec/mysqld"); err != nil {
		return b, err
	}
	if b.InstallDB, err = lookBinary("SWITCHYARD_MARIADB_INSTALL_DB",
		"mariadb-install-db", "mysql_install_db", "/usr/bin/mariadb-install-db", "/usr/bin/mysql_install_db"); err != nil {
		return b, err
	}
	return b, nil
}

func lookBinary(envVar string, candidates ...string) (string, error) {
	if p := os.Getenv(envVar); p != "" {
		if _, err := exec.LookPath(p); err != nil {
			return "", fmt.Errorf("%w: %s=%q: %v", ErrMariaDBNotInstalled, envVar, p, err)
		}
		return p, nil
	}
	for _, c := range candidates {
		if p, err := exec.LookPath(c); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: none of %v found (set %s)", ErrMariaDBNotInstalled, candidates, envVar)
}

// EtcdBinary finds the etcd server: SWITCHYARD_ETCD_BIN, else etcd on PATH, else the usual
// install locations.
func EtcdBinary() (string, error) {
	if p := os.Getenv("SWITCHYARD_ETCD_BIN"); p != "" {
		if _, err := exec.LookPath(p); err != nil {
			return "", fmt.Errorf("SWITCHYARD_ETCD_BIN=%q: %v", p, err)
		}
		return p, nil
	}
	for _, c := range []string{"etcd", "/usr/bin/etcd", "/usr/local/bin/etcd"} {
		if p, err := exec.LookPath(c); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("the etcd server binary is needed: none of etcd, /usr/bin/etcd, /usr/local/bin/etcd " +
		"found (Debian: apt-get install etcd-server, or run scripts/install-deps.sh; or set SWITCHYARD_ETCD_BIN)")
}
