"""STAND-IN mirror server of the molecule scenario erdma_driver: the files under a directory over HTTPS.

Serves the stand-in eRDMA mirror built by build_mirror.py with the certificate of drv-mirror (signed
by the scenario's throw-away CA, which prepare.yml makes the Ubuntu nodes trust), so that the role's
HTTPS default is exercised end to end: get_url, uri and apt all verify the certificate.

Usage: python3 https_mirror.py DIRECTORY PORT CERT KEY
"""
import functools
import http.server
import ssl
import sys


def main():
    directory, port, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=directory)
    server = http.server.ThreadingHTTPServer(("", port), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
