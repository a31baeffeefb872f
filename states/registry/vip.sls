{#- The real-server side of the registry VIP (direct routing, see states/lvs/init.sls): the
    director forwards a client's packet unchanged to this node's MAC address, so the kernel must
    take the VIP as a local address (on the loopback, where it is never announced) and must not
    answer ARP for it, or clients would reach a registry without the director.
    When pillar registry:vip:address is not set, what an earlier VIP laid down is taken away:
    the VIP off lo, its unit, and the ARP settings back to the kernel's defaults. -#}
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
{%- else %}
{%- set unit = '/etc/systemd/system/saltyard-registry-vip.service' %}
# No VIP: stop the unit (its ExecStop takes the VIP off lo) while its file is still there.
registry-vip:
  service.dead:
    - name: saltyard-registry-vip
    - enable: False
    # Only where an earlier VIP left the unit: elsewhere test mode has nothing to predict.
    - onlyif: test -e {{ unit }}

registry-vip-unit:
  file.absent:
    - name: {{ unit }}
    - require:
      - service: registry-vip

registry-vip-systemd-reload:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: registry-vip-unit

# Also when the unit went some other way: no address labelled lo:vip stays on lo.
registry-vip-address:
  cmd.run:
    - name: ip -4 addr flush dev lo label lo:vip
    - onlyif: ip -4 -o addr show dev lo label lo:vip | grep -q inet
    - require:
      - service: registry-vip

# The ARP settings go back to the kernel's defaults (0) when their file goes: nothing else here
# sets them, and with no VIP on lo this node answers ARP as any other.
registry-vip-sysctl-file:
  file.absent:
    - name: /etc/sysctl.d/61-saltyard-registry-vip.conf

{%- for key in ['net.ipv4.conf.all.arp_ignore', 'net.ipv4.conf.all.arp_announce'] %}
registry-vip-{{ key }}:
  cmd.run:
    - name: sysctl -w {{ key }}=0
    - onchanges:
      - file: registry-vip-sysctl-file
{%- endfor %}
{%- endif %}
