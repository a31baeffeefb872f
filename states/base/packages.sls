{%- from 'base/map.jinja' import base with context %}
base-packages:
  pkg.installed:
    - pkgs: {{ base.packages | json }}
    # A platform node carries what it needs and nothing else.
    - install_recommends: False
