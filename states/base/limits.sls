{%- from 'base/map.jinja' import base with context %}
/etc/security/limits.d/60-saltyard.conf:
  file.managed:
    - mode: '0644'
    - contents: |
        # Managed by Salt (saltyard base.limits).
        *    soft  nofile  {{ base.limits.nofile }}
        *    hard  nofile  {{ base.limits.nofile }}
        root soft  nofile  {{ base.limits.nofile }}
        root hard  nofile  {{ base.limits.nofile }}
        *    soft  nproc   {{ base.limits.nproc }}
        *    hard  nproc   {{ base.limits.nproc }}
