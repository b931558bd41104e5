# Debian's openstack-dashboard local_settings.py (excerpt), as packstack-style configured
import os

from django.utils.translation import gettext_lazy as _

from horizon.utils import secret_key

from openstack_dashboard.settings import HORIZON_CONFIG

DEBUG = False
ALLOWED_HOSTS = ['*']

# OPENSTACK_HOST = "127.0.0.1"
OPENSTACK_HOST = "192.168.1.220"
OPENSTACK_KEYSTONE_URL = "http://%s:5000/v3" % OPENSTACK_HOST

TIME_ZONE = "UTC"
