{#- The LVS director of the registry VIP: keepalived holds the VIP (VRRP) and keeps the IPVS
    virtual service's real servers to the registries whose /debug/health answers 200.

    Forwarding is direct routing (DR): the director only rewrites the destination MAC, and each
    registry, which holds the VIP on its loopback (registry/vip.sls), answers the client itself.
    NAT cannot work where clients, director and registries share one L2 network, as in the local
    cluster (one Docker bridge): a registry would send its reply straight to the client, from its
    own address, and the client would drop it. Tunnelling would need IPIP on the registries. DR
    needs nothing but the VIP on the real servers and their ARP settings.

    keepalived.conf is checked with `keepalived -t` before it replaces the live file; keepalived
    is then reloaded (SIGHUP), never restarted, so established connections and the VIP stay. -#}
{%- from 'lvs/map.jinja' import lvs, vip, servers, interface, vrrp_state, priority with context %}
{%- set me = salt['pillar.get']('saltyard:node', {}) %}

lvs-packages:
  pkg.installed:
    - pkgs: {{ lvs.packages | json }}
    - install_recommends: False

# keepalived loads ip_vs itself; loading it here fails this state with the kernel's own message
# (for example in a container, which has the host's kernel) instead of a line in keepalived's log.
lvs-ip_vs-module:
  kmod.present:
    - name: ip_vs
    - persist: True

lvs-keepalived-config:
  file.managed:
    - name: {{ lvs.config }}
    - makedirs: True
    - user: root
    - group: root
    - mode: '0644'
    # Salt writes the candidate to a temporary file, runs this with the file appended, and
    # replaces the live file only when it exits 0 (a failure skips the reload below).
    - check_cmd: keepalived -t -f
    - require:
      - pkg: lvs-packages
    - contents: |
        # Managed by Salt (saltyard lvs). The registry VIP: VRRP holds the address, IPVS
        # (direct routing) spreads connections over the registries that pass their health check.
        global_defs {
            router_id {{ me.name }}
        }

        vrrp_instance registry_vip {
            state {{ vrrp_state }}
            interface {{ interface }}
            virtual_router_id {{ lvs.vrrp.virtual_router_id }}
            priority {{ priority }}
            advert_int {{ lvs.vrrp.advert_int }}
            # A /32: the node's own address already gives the interface the subnet's route.
            virtual_ipaddress {
                {{ vip.address }}/32 dev {{ interface }}
            }
        }

        virtual_server {{ vip.address }} {{ vip.port }} {
            delay_loop {{ lvs.health.delay_loop }}
            lb_algo {{ lvs.scheduler }}
            # Direct routing: see states/lvs/init.sls for why not NAT.
            lb_kind DR
            protocol TCP
        {%- for server in servers %}

            # {{ server.name }}
            real_server {{ server.address }} {{ vip.port }} {
                weight 1
                HTTP_GET {
                    url {
                        path /debug/health
                        status_code 200
                    }
                    connect_ip {{ server.address }}
                    connect_port {{ vip.debug_port }}
                    connect_timeout {{ lvs.health.connect_timeout }}
                    retry {{ lvs.health.retry }}
                    delay_before_retry {{ lvs.health.delay_before_retry }}
                }
            }
        {%- endfor %}
        }

keepalived:
  service.running:
    - enable: True
    # A changed configuration is applied with SIGHUP (the unit's ExecReload), not a restart.
    - reload: True
    - require:
      - kmod: lvs-ip_vs-module
    - watch:
      - file: lvs-keepalived-config
