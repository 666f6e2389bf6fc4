"""Test certificates made with the openssl command at test time, in a temporary directory: a CA,
trunkline's server certificate (CN localhost, SAN 127.0.0.1), a PBX client certificate from the
same CA, one from another CA (wrong), and an expired one. P-256 keys: quick to make."""
import os
import subprocess
import tempfile

CA_CNF = """[ca]
default_ca = d
[d]
database = {dir}/index.txt
new_certs_dir = {dir}
serial = {dir}/serial
policy = p
default_md = sha256
copy_extensions = copy
[p]
commonName = supplied
"""


def _ssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, timeout=30,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _key_csr(d, name, cn, san=None):
    extra = ["-addext", f"subjectAltName={san}"] if san else []
    _ssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-subj", f"/CN={cn}", "-keyout", f"{name}.key", "-out", f"{name}.csr", *extra, cwd=d)


def _ca(d, name):
    _ssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "2", "-subj", f"/CN={name} test CA", "-keyout", f"{name}.key",
         "-out", f"{name}.pem", cwd=d)


def _sign(d, ca, name, days=2):
    _ssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
         "-CAcreateserial", "-days", str(days), "-copy_extensions", "copy",
         "-out", f"{name}.pem", cwd=d)


class Certs:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="tl-certs-")
        d = self.dir
        _ca(d, "ca")
        _ca(d, "otherca")
        _key_csr(d, "server", "localhost", "DNS:localhost,IP:127.0.0.1")
        _sign(d, "ca", "server")
        _key_csr(d, "pbx", "pbx.example.com")
        _sign(d, "ca", "pbx")
        _key_csr(d, "rogue", "pbx.example.com")
        _sign(d, "otherca", "rogue")
        # Expired: openssl x509 cannot back-date, "openssl ca" can.
        with open(os.path.join(d, "index.txt"), "w"):
            pass
        with open(os.path.join(d, "serial"), "w") as f:
            f.write("1000\n")
        with open(os.path.join(d, "ca.cnf"), "w") as f:
            f.write(CA_CNF.format(dir=d))
        _key_csr(d, "old", "localhost")
        _ssl("ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key",
             "-in", "old.csr", "-out", "old.pem", "-startdate", "20200101000000Z",
             "-enddate", "20200201000000Z", cwd=d)

    def path(self, name):
        return os.path.join(self.dir, name)

    def intermediate(self, name, ca="ca"):
        """An intermediate CA (name.pem, name.key) signed by ca."""
        if not os.path.exists(self.path(name + ".pem")):
            _key_csr(self.dir, name, f"{name} intermediate CA")
            with open(self.path(name + ".ext"), "w") as f:
                f.write("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\n")
            _ssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
                 "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext",
                 "-out", f"{name}.pem", cwd=self.dir)
        return self.path(name + ".pem")

    def weak(self):
        """A self-signed certificate with a 1024-bit RSA key (weak.pem, weak.key): below the
        security level of Debian 12's OpenSSL (2)."""
        if not os.path.exists(self.path("weak.pem")):
            _ssl("req", "-x509", "-newkey", "rsa:1024", "-nodes", "-days", "2", "-subj",
                 "/CN=localhost", "-keyout", "weak.key", "-out", "weak.pem", cwd=self.dir)
        return self.path("weak.pem"), self.path("weak.key")

    def broken_chain(self):
        """server.pem followed by a certificate block whose content is not DER."""
        p = self.path("broken-chain.pem")
        if not os.path.exists(p):
            with open(self.path("server.pem")) as f:
                good = f.read()
            with open(p, "w") as f:
                f.write(good + "-----BEGIN CERTIFICATE-----\nTUlJQm5vdCBhIGNlcnRpZmljYXRl\n"
                        "-----END CERTIFICATE-----\n")
        return p

    def server(self, name, cn, ca="ca"):
        """Another server certificate (name.pem, name.key) from ca, valid for 127.0.0.1 and
        ::1: a renewed certificate for the reload tests, or one for IPv6 listeners."""
        if not os.path.exists(self.path(name + ".pem")):
            _key_csr(self.dir, name, cn, "DNS:localhost,IP:127.0.0.1,IP:::1")
            _sign(self.dir, ca, name)
        return self.path(name + ".pem"), self.path(name + ".key")
