{%- from 'base/map.jinja' import base with context %}
{%- for lang in base.apt.languages %}
{%- if lang is not string or not (lang | regex_match('^(none|environment|[a-z]{2,3}(_[A-Z]{2})?)$')) %}
{{ raise("pillar base:apt:languages: " ~ (lang | json) ~ " is not a language apt knows: expected none, environment or a code like en or pt_BR") }}
{%- endif %}
{%- endfor %}
# Before the base packages, the first package state of a highstate (every role includes base)
# and so the one that refreshes the lists (Salt refreshes once per minion start): no refresh
# fetches what the setting leaves out.
base-apt-languages:
  file.managed:
    - name: /etc/apt/apt.conf.d/60saltyard-languages
    - contents: |
        // Managed by Salt (saltyard base): the description translations apt fetches.
        Acquire::Languages { {% for lang in base.apt.languages %}{{ lang | json }}; {% endfor %}};

base-packages:
  pkg.installed:
    - pkgs: {{ base.packages | json }}
    # A platform node carries what it needs and nothing else.
    - install_recommends: False
    - require:
      - file: base-apt-languages
