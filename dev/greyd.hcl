# Development configuration: `make run` starts greyd with it, on
# 127.0.0.1:10023 with its state under build/ in the checkout. Relative
# paths are resolved against this directory.

listen {
  inet = "127.0.0.1:10023"
}

database {
  path = "../build/state/greyd.db"
}

greylist {
  delay = "1m"
}

whitelist {
  clients    = ["../etc/greyd/whitelist_clients", "whitelist_clients.local"]
  recipients = ["../etc/greyd/whitelist_recipients", "whitelist_recipients.local"]
}
