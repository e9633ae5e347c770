"""Learners: online RL and bandits against an env, offline learners from logs.

Every learner is scikit-learn style (parameters in the constructor, ``fit`` returns ``self``,
learned state ends in ``_``, ``random_state``) and yields a ``TabularPolicy`` as ``policy_``.

Online, against an env (``fit(env, n_steps=)``, ``learning_curve_``):
``QLearning``, ``Sarsa``, ``ExpectedSarsa`` (tabular TD, ``n_envs`` parallel users) and the
bandits ``EpsilonGreedy``, ``UCB1``, ``ThompsonSampling`` (Beta-Bernoulli or Gaussian),
``LinUCB`` (feature contexts), which also decide one at a time (``select``/``update``).

Offline, from logs (``fit(logs, n_states=, n_actions=)``): ``FittedQIteration`` (session logs),
``DirectMethodLearner``, ``IPSLearner`` and ``ConservativeLearner`` (support-restricted).
"""

from hfrl.learners.bandit_problems import BernoulliBandit
from hfrl.learners.conservative import ConservativeLearner
from hfrl.learners.direct_method import DirectMethodLearner
from hfrl.learners.epsilon_greedy import EpsilonGreedy
from hfrl.learners.expected_sarsa import ExpectedSarsa
from hfrl.learners.fitted_q import FittedQIteration
from hfrl.learners.ips import IPSLearner
from hfrl.learners.linucb import LinUCB
from hfrl.learners.q_learning import QLearning
from hfrl.learners.sarsa import Sarsa
from hfrl.learners.thompson import ThompsonSampling
from hfrl.learners.ucb1 import UCB1

__all__ = [
    "UCB1",
    "BernoulliBandit",
    "ConservativeLearner",
    "DirectMethodLearner",
    "EpsilonGreedy",
    "ExpectedSarsa",
    "FittedQIteration",
    "IPSLearner",
    "LinUCB",
    "QLearning",
    "Sarsa",
    "ThompsonSampling",
]
