# greyd configuration of the end-to-end test. run.sh copies it, with the
# packaged whitelist files of etc/greyd, to /var/tmp/greyd-e2e/greyd/ (the
# test's /etc/greyd) and runs `greyd -config /var/tmp/greyd-e2e/greyd`.
# The socket is the packaged one: Postfix's chrooted smtpd reaches it as
# unix:greyd/socket.

listen {
  unix         = "/var/spool/postfix/greyd/socket"
  socket_mode  = "0660"
  socket_group = "postfix"
}

database {
  path = "/var/tmp/greyd-e2e/state/greyd.db"
}

greylist {
  delay    = "5s"   # run.sh waits for this; keep them in step
  hostname = "greyd-e2e.test"
}

# Every scenario's client is on 127.0.0.0/24: automatic whitelisting would
# make the scenarios depend on their order.
auto_whitelist {
  clients = 0
}

# Relative paths: against this directory.
whitelist {
  clients    = ["whitelist_clients", "whitelist_clients.local"]
  recipients = ["whitelist_recipients", "whitelist_recipients.local"]
}
