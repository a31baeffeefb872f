{%- from 'zookeeper/map.jinja' import zookeeper, ensemble, my_id with context %}
{%- if my_id is none %}
{{ raise("this node is not a zookeeper member in the inventory pillar") }}
{%- endif %}
zookeeper-package:
  pkg.installed:
    - name: {{ zookeeper.package }}
    - install_recommends: False

zookeeper-config:
  file.managed:
    - name: /etc/zookeeper/conf/zoo.cfg
    - mode: '0644'
    - require:
      - pkg: zookeeper-package
    - contents: |
        # Managed by Salt (saltyard zookeeper). Ensemble from salt/inventory.yaml.
        tickTime={{ zookeeper.tick_time }}
        initLimit={{ zookeeper.init_limit }}
        syncLimit={{ zookeeper.sync_limit }}
        dataDir={{ zookeeper.data_dir }}
        clientPort={{ zookeeper.client_port }}
        # Health probes (ruok, mntr, srvr) only; the admin web server stays off.
        4lw.commands.whitelist=ruok,mntr,srvr
        admin.enableServer=false
        {%- for member in ensemble %}
        server.{{ member.id }}={{ member.address }}:{{ zookeeper.peer_port }}:{{ zookeeper.election_port }}
        {%- endfor %}

zookeeper-myid:
  file.managed:
    - name: /etc/zookeeper/conf/myid
    - mode: '0644'
    - contents: '{{ my_id }}'
    - require:
      - pkg: zookeeper-package

zookeeper-environment:
  file.managed:
    - name: /etc/zookeeper/conf/environment
    - mode: '0644'
    - require:
      - pkg: zookeeper-package
    - contents: |
        # Managed by Salt (saltyard zookeeper). Read by /etc/init.d/zookeeper.
        ZOOMAIN=org.apache.zookeeper.server.quorum.QuorumPeerMain
        ZOOCFGDIR=/etc/zookeeper/conf
        ZOOCFG=/etc/zookeeper/conf/zoo.cfg
        ZOO_LOG_DIR=/var/log/zookeeper
        ZOO_LOG4J_PROP=INFO,ROLLINGFILE
        JMXLOCALONLY=true
        JAVA_OPTS="-Xms{{ zookeeper.heap_mb }}m -Xmx{{ zookeeper.heap_mb }}m"
        JAVA=/usr/bin/java
        CLASSPATH="/etc/zookeeper/conf:/usr/share/java/zookeeper.jar"

zookeeper:
  service.running:
    - enable: True
    - require:
      - pkg: zookeeper-package
    - watch:
      - file: zookeeper-config
      - file: zookeeper-myid
      - file: zookeeper-environment
