#!/usr/bin/python3
"""The portal's console proxy: Debian's websockify, with a request handler that asks the portal
which VM's SPICE socket a WebSocket may reach.

Why not a plain websockify token plugin: a plugin's lookup() sees only the token, never the
request. This handler also forwards the browser's Cookie header to the portal, which then checks
that the token belongs to the very login session of the browser using it (a leaked token is
useless from another browser or after log-out), besides its expiry and the VM's owner. Everything
else (the WebSocket protocol, framing, the per-connection process, the proxying) is websockify's.

    portal_console_proxy.py --listen 127.0.0.1:6080 --resolve http://127.0.0.1:3000/internal/console/resolve
    (the shared secret comes from $PORTAL_PROXY_SECRET)

The portal answers {"kind": "unix", "path": "..."} (or {"kind": "tcp", "host":, "port":}) or a
refusal; a refused WebSocket is closed before anything reaches a VM. Only the loopback address
may be listened on unless --allow-remote is given.

Each WebSocket gets a random id, sent with every resolve of its token (X-Console-Connection); the
portal counts a user's open WebSockets by it and refuses one more than the user may have, and
this handler reports the WebSocket's end (POST .../close) however it ends.
"""
import argparse
import ipaddress
import logging
import json
import os
import secrets
import sys
import urllib.error
import urllib.parse
import urllib.request

from websockify import websocketproxy


class Refused(Exception):
    """The portal answered with an HTTP error: a refusal (403), or trouble of its own (5xx)."""

    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


class PortalProxyHandler(websocketproxy.ProxyRequestHandler):
    """websockify's handler, with the target decided by the portal for each connection, and the
    decision re-checked while the connection is open."""

    resolve_url = None
    secret = None
    timeout = 10
    # websockify calls send_ping every `heartbeat` seconds from its proxy loop (main() sets it
    # to this): each ping also asks the portal again whether this console may stay open.
    recheck_interval = 15

    connection_id = None

    def token(self):
        query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        return (query.get("token") or [""])[0]

    def portal_headers(self):
        return {"X-Portal-Proxy-Secret": self.secret, "X-Console-Connection": self.connection_id,
                "Accept": "application/json"}

    def resolve(self, token, open_console=False):
        """The portal's answer for the token (and the browser's cookie), or Refused."""
        headers = dict(self.portal_headers(), **{"X-Console-Token": token})
        if open_console:
            headers["X-Console-Open"] = "1"
        cookie = self.headers.get("Cookie")
        if cookie:
            headers["Cookie"] = cookie
        req = urllib.request.Request(self.resolve_url, headers=headers, method="GET")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            reason = "refused"
            try:
                reason = json.loads(e.read().decode("utf-8")).get("error", reason)
            except Exception:  # noqa: BLE001 - any body: keep the generic reason
                pass
            raise Refused("console token refused (%s): %s" % (e.code, reason), e.code) from e

    def handle_upgrade(self):
        """The whole life of one WebSocket (websockify's handle_upgrade resolves it, then proxies
        until it closes): afterwards the portal hears that it ended, so that it no longer counts
        among the user's open console connections."""
        self.connection_id = secrets.token_hex(16)
        try:
            super().handle_upgrade()
        finally:
            self.report_closed()

    def report_closed(self):
        """Tell the portal this WebSocket has ended. Best effort: a connection not reported stops
        counting after the portal's STALE time without a re-check."""
        if not self.resolve_url or not self.connection_id:
            return
        url = urllib.parse.urljoin(self.resolve_url, "close")
        req = urllib.request.Request(url, data=b"", headers=self.portal_headers(), method="POST")
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                resp.read()
        except Exception as e:  # noqa: BLE001 - the portal is down: it forgets the connection later
            self.log_message("console connection end not reported: %s", e)

    def validate_connection(self):
        token = self.token()
        if not token:
            raise self.server.EClose("console token missing")
        try:
            target = self.resolve(token)
        except Refused as e:
            self.log_message("%s", e)
            raise self.server.EClose(str(e))
        except Exception as e:  # noqa: BLE001 - the portal is down or answered garbage
            self.log_message("console token not resolved: %s", e)
            raise self.server.EClose("console token not resolved: %s" % e)
        # Each connection runs in its own forked process, so setting the target on this
        # process's copy of the server affects this connection only.
        if target.get("kind") == "unix":
            self.server.unix_target = target["path"]
        elif target.get("kind") == "tcp":
            self.server.unix_target = None
            self.server.target_host = target["host"]
            self.server.target_port = int(target["port"])
        else:
            raise self.server.EClose("console target not understood")
        self.target = target

    def send_ping(self, data=b""):
        """Ping, and ask the portal whether the open console may stay: a console outlives neither
        its session (log-out, expiry, the user deleted) nor the VM's owner changing. The token's
        own expiry does not count here (it limits when a connection may start). Closed only on a
        refusal: a portal restarting or a store busy for a moment (5xx) does not cut every console."""
        super().send_ping(data)
        try:
            target = self.resolve(self.token(), open_console=True)
        except Refused as e:
            if e.code >= 500:
                self.log_message("open console not re-checked: %s", e)
                return
            self.log_message("open console closed: %s", e)
            raise self.CClose(1008, "console access ended")
        except Exception as e:  # noqa: BLE001 - not reachable now: ask again next time
            self.log_message("open console not re-checked: %s", e)
            return
        if target != self.target:
            self.log_message("open console closed: its VM's console moved")
            raise self.CClose(1008, "console access ended")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:6080", help="HOST:PORT to listen on")
    ap.add_argument("--resolve", required=True, help="the portal's resolve URL")
    ap.add_argument("--allow-remote", action="store_true", help="allow listening beyond loopback")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()

    host, _, port = a.listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not a.allow_remote and not ipaddress.ip_address(host).is_loopback:
        ap.error("refusing to listen on %s: the console proxy stays on loopback (--allow-remote)" % host)
    secret = os.environ.get("PORTAL_PROXY_SECRET", "")
    if not secret:
        ap.error("PORTAL_PROXY_SECRET is not set")
    u = urllib.parse.urlparse(a.resolve)
    if u.scheme != "http" or not ipaddress.ip_address(u.hostname).is_loopback:
        ap.error("the resolve URL must be http on loopback")

    PortalProxyHandler.resolve_url = a.resolve
    PortalProxyHandler.secret = secret
    opts = dict(listen_host=host, listen_port=int(port), verbose=a.verbose, web=None,
                # a token source is what makes websockify pick the target per connection
                token_plugin=None, heartbeat=PortalProxyHandler.recheck_interval, daemon=False,
                record=None)
    # websockify's own log set-up: its lines go to stderr
    logger = logging.getLogger(websocketproxy.WebSocketProxy.log_prefix)
    logger.propagate = False
    logger.setLevel(logging.DEBUG if a.verbose else logging.INFO)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.addHandler(handler)
    server = websocketproxy.WebSocketProxy(RequestHandlerClass=PortalProxyHandler, **opts)
    server.start_server()


if __name__ == "__main__":
    sys.exit(main())
