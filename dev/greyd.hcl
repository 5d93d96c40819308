# Development configuration: `make run` starts greyd with it, on
# 127.0.0.1:10023 with its state and control socket under build/ in the
# checkout. Relative paths are resolved against this directory. It is one
# file (greyd -config dev/greyd.hcl), so no conf.d is read.

listen {
  inet = "127.0.0.1:10023"
}

database {
  path = "../build/state/greyd.db"
}

greylist {
  delay            = "1m"
  policy_test_time = true # hand-written requests may set their time
}

whitelist {
  clients    = ["../etc/greyd/whitelist_clients", "whitelist_clients.local"]
  recipients = ["../etc/greyd/whitelist_recipients", "whitelist_recipients.local"]
}

# The admin CLI reaches this daemon with -config dev/greyd.hcl.
control {
  socket = "../build/control.sock"
}
