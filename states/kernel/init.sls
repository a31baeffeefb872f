{#- Refuse a kernel older than pillar kernel:min_version (kernel/defaults.yaml), before any other
    state runs (order 1 with failhard: a failure stops the whole run). Then, when pillar
    kernel:boot names a package, install the kernel it carries and make it GRUB's saved default
    (order 2, failhard: a kernel apt cannot find stops the run before the other roles change
    anything). Never a reboot: docs/kernel.md. -#}
{%- from 'kernel/map.jinja' import kernel, boot with context %}
{%- from 'lib/apt_keyring.jinja' import keyring_states with context %}
kernel-min-version:
  kernel_check.min_version:
    - name: {{ kernel.min_version | string | json }}
    - order: 1
    - failhard: True
{%- if boot.package %}
{%-   if boot.source %}
{%-     if boot.keyring.get('source') %}
{{ keyring_states('kernel-apt-keyring', boot.keyring) }}
{%-     endif %}

kernel-apt-source:
  file.managed:
    - name: /etc/apt/sources.list.d/saltyard-kernel.list
    - contents: {{ boot.source | json }}
    - order: 2
    {%- if boot.keyring.get('source') %}
    - require:
      - apt_keyring: kernel-apt-keyring
    {%- endif %}
{%-   endif %}

kernel-boot:
  kernel_boot.installed:
    - name: {{ boot.package | json }}
    - release: {{ boot.release | string | json }}
    - min_version: {{ kernel.min_version | string | json }}
    - order: 2
    - failhard: True
    - require:
      - kernel_check: kernel-min-version
    {%- if boot.source %}
      - file: kernel-apt-source
    {%- endif %}
{%- endif %}
