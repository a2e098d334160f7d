# Name resolution across network namespaces (needs root and iproute2; the
# script exits 77 = skipped otherwise).  mdns-peer loads the mDNS plugin
# through the public ABI with a minimal fake host.
check_PROGRAMS += t/netns/mdns-peer
t_netns_mdns_peer_SOURCES = t/netns/mdns_peer.c
t_netns_mdns_peer_CPPFLAGS = -I$(top_srcdir)/plugin-sdk/include

TESTS += t/netns/test-mdns-netns.sh
EXTRA_DIST += t/netns/test-mdns-netns.sh
