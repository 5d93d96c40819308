# greyd configuration: a greylisting policy server for Postfix.
#
# When greyd is given a directory (/etc/greyd), it reads every *.hcl file in
# it, in lexical order, and merges them; a setting may be given only once
# across all files. This file spells out every setting, so change values
# here; extra files can add listen blocks. Apart from the listen block, the
# values below are the defaults, which are Postgrey's.
# Durations take the units s, m, h, d (days) and w (weeks): "1h30m", "2d".
# Relative paths are relative to this directory.

# Used only when not socket-activated: with greyd.socket, systemd owns the
# socket and these blocks are ignored. Postfix (chrooted) refers to this
# socket as "check_policy_service unix:greyd/socket". Repeat the block to
# listen on more sockets; inet = "127.0.0.1:10023" listens on TCP.
listen {
  unix         = "/var/spool/postfix/greyd/socket"
  socket_mode  = "0660"    # octal permission bits of the socket
  socket_group = "postfix" # Postfix must reach the socket; "" keeps greyd's group
}

database {
  path = "/var/lib/greyd/greyd.db" # triplets and auto-whitelist
  sync = "everysecond"             # fsync: never | everysecond | always
}

greylist {
  delay             = "5m"              # how long a new triplet is deferred
  retry_window      = "2d"              # a retry later than this after first sight starts over
  max_age           = "35d"             # entries not seen for this long are forgotten
  lookup_by         = "subnet"          # "subnet": key on the client's network; "host": on its IP
  ipv4_prefix       = 24                # network size for lookup_by = "subnet", IPv4
  ipv6_prefix       = 64                # network size for lookup_by = "subnet", IPv6
  action            = "DEFER_IF_PERMIT" # Postfix action when greylisting ("451", "DEFER", ...)
  text              = "Greylisted, see http://postgrey.schweikert.ch/help/%r.html" # %s = seconds left, %r = recipient domain
  x_greylist_header = true              # add a header to mail that passed greylisting
  header_text       = "X-Greylist: delayed %t seconds by greyd-%v at %h; %d" # %t delay, %v version, %h host, %d date
  hostname          = ""                # for %h; "" = this machine's hostname
  privacy           = false             # store keyed hashes (HMAC) instead of addresses
}

auto_whitelist {
  clients = 5 # whitelist a client after this many passed triplets; 0 disables
}

# Postgrey-format whitelist files, reloaded when they change. Missing
# *.local files are fine; put your own entries there.
whitelist {
  clients = [
    "whitelist_clients",       # /etc/greyd/whitelist_clients
    "whitelist_clients.local", # yours; upgrades never touch it
  ]
  recipients = [
    "whitelist_recipients",
    "whitelist_recipients.local",
  ]
}

limits {
  max_line_length = 8192   # bytes per request line from Postfix
  max_attributes  = 100    # attribute lines per request
  max_connections = 1000   # concurrent Postfix connections
  request_timeout = "10s"  # to read one complete request
  idle_timeout    = "330s" # between requests; Postfix keeps connections 300s
  store_timeout   = "2s"   # for one database operation
}
