{#- The real-server side of the registry VIP (direct routing, see states/lvs/init.sls): the
    director forwards a client's packet unchanged to this node's MAC address, so the kernel must
    take the VIP as a local address (on the loopback, where it is never announced) and must not
    answer ARP for it, or clients would reach a registry without the director.
    Nothing here when pillar registry:vip:address is not set. -#}
{%- from 'registry/vip.jinja' import vip with context %}
{%- if vip %}
# arp_ignore=1: answer ARP only for addresses of the interface the request came in on (not the
# VIP on lo); arp_announce=2: never use the VIP as the source of this node's ARP requests. The
# kernel takes the larger of `all` and the interface's value. Namespaced (net.*): a registry in a
# container may set them.
{%- for key, value in [('net.ipv4.conf.all.arp_ignore', 1), ('net.ipv4.conf.all.arp_announce', 2)] %}
registry-vip-{{ key }}:
  sysctl.present:
    - name: {{ key }}
    - value: {{ value }}
    - config: /etc/sysctl.d/61-saltyard-registry-vip.conf
    - require_in:
      - service: registry-vip
{%- endfor %}

# The VIP on lo, labelled, so that a changed VIP replaces the old one (the flush) and a stop
# removes it. A oneshot unit keeps it across reboots.
registry-vip-unit:
  file.managed:
    - name: /etc/systemd/system/saltyard-registry-vip.service
    - mode: '0644'
    - contents: |
        # Managed by Salt (saltyard registry.vip): the registry VIP for LVS direct routing.
        [Unit]
        Description=Registry VIP {{ vip.address }} on lo (LVS direct routing)
        Before=docker-registry.service

        [Service]
        Type=oneshot
        RemainAfterExit=yes
        ExecStartPre=/bin/ip -4 addr flush dev lo label lo:vip
        ExecStart=/bin/ip addr add {{ vip.address }}/32 dev lo label lo:vip
        ExecStop=/bin/ip -4 addr flush dev lo label lo:vip

        [Install]
        WantedBy=multi-user.target

registry-vip:
  service.running:
    - name: saltyard-registry-vip
    - enable: True
    - watch:
      - file: registry-vip-unit
{%- endif %}
