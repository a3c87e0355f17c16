# -*- coding: utf-8 -*-
# Copyright (c) estafeta.postfix contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A relay that offers AUTH PLAIN LOGIN but no STARTTLS, and records every byte a client sends.

Usage: python3 capture_smtp.py DIRECTORY PORT [PORT...]

Each connection's bytes, exactly as received, go to DIRECTORY/<port>/<time>-<n>.log. It accepts any
AUTH (so a client that would send its password here gets every chance to), any envelope and any
message. The security scenario points relays with credentials at it and then searches those files
for the passwords.
"""

import itertools
import os
import socketserver
import sys
import threading
import time

GREETING = b'220 capture.example.test ESMTP capture\r\n'
EHLO = (b'250-capture.example.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n'
        b'250-AUTH PLAIN LOGIN\r\n250-AUTH=PLAIN LOGIN\r\n250 8BITMIME\r\n')
COUNTER = itertools.count(1)
LOCK = threading.Lock()


class Handler(socketserver.StreamRequestHandler):
    timeout = 120

    def setup(self):
        super().setup()
        port = self.server.server_address[1]
        directory = os.path.join(self.server.capture_dir, str(port))
        os.makedirs(directory, exist_ok=True)
        with LOCK:
            number = next(COUNTER)
        self.log = open(os.path.join(directory, '%d-%06d.log' % (time.time(), number)), 'ab', buffering=0)

    def finish(self):
        self.log.close()
        super().finish()

    def line(self):
        data = self.rfile.readline(65536)
        self.log.write(data)
        return data

    def send(self, data):
        self.wfile.write(data)
        self.wfile.flush()

    def handle(self):
        self.send(GREETING)
        while True:
            data = self.line()
            if not data:
                return
            verb = data.strip().split(b' ')[0].upper()
            if verb in (b'EHLO', b'HELO'):
                self.send(EHLO if verb == b'EHLO' else b'250 capture.example.test\r\n')
            elif verb == b'AUTH':
                self.auth(data.strip().split(b' ')[1:])
            elif verb in (b'MAIL', b'RCPT', b'RSET', b'NOOP'):
                self.send(b'250 2.0.0 Ok\r\n')
            elif verb == b'DATA':
                self.send(b'354 End data with <CR><LF>.<CR><LF>\r\n')
                while True:
                    body = self.line()
                    if not body or body in (b'.\r\n', b'.\n'):
                        break
                self.send(b'250 2.0.0 Ok: captured\r\n')
            elif verb == b'QUIT':
                self.send(b'221 2.0.0 Bye\r\n')
                return
            elif verb == b'STARTTLS':
                self.send(b'454 4.7.0 TLS not available\r\n')
            else:
                self.send(b'502 5.5.2 Error: command not recognized\r\n')

    def auth(self, args):
        mechanism = args[0].upper() if args else b''
        if mechanism == b'PLAIN' and len(args) < 2:
            self.send(b'334 \r\n')
            self.line()
        elif mechanism == b'LOGIN':
            if len(args) < 2:
                self.send(b'334 VXNlcm5hbWU6\r\n')
                self.line()
            self.send(b'334 UGFzc3dvcmQ6\r\n')
            self.line()
        self.send(b'235 2.7.0 Authentication successful\r\n')


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main():
    directory, ports = sys.argv[1], [int(p) for p in sys.argv[2:]]
    servers = []
    for port in ports:
        server = Server(('0.0.0.0', port), Handler)
        server.capture_dir = directory
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
    threading.Event().wait()


if __name__ == '__main__':
    main()
